// Readings and risk history of one miner. The server's HistoryService is not in this build yet:
// the page says so instead of drawing empty charts.
import type { Marker } from "./charts.js";
import { h } from "./dom.js";

export async function history(
  _minerId: string,
  _start: Date,
  _end: Date,
  _range: [number, number],
  _markers: Marker[],
): Promise<HTMLElement[]> {
  return [h("p", { class: "hint" }, "Readings and risk history appear here once the server offers its history API.")];
}
