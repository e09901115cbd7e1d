// Time-series charts on uPlot: lines over time, shaded windows (anomalies, outages, planned states),
// vertical event markers (failures) and horizontal cut-offs. Each chart is a <figure> whose caption
// and marker list say in text what the canvas shows.
import uPlot from "uplot";
import { h } from "./dom.js";
import { dateTime } from "./format.js";

export interface Line {
  label: string;
  values: (number | null)[];
  colour: string;
  dash?: number[];
}

export interface Band {
  start: number; // unix seconds
  end: number;
  kind: string; // "anomaly" | "outage" | "planned" ...
}

export interface Marker {
  at: number; // unix seconds
  label: string;
  kind: string; // "failure" | ...
}

export interface Cut {
  value: number;
  label: string;
  colour: string;
}

export interface ChartSpec {
  id: string;
  title: string;
  unit: string;
  times: number[]; // unix seconds, ascending
  lines: Line[];
  bands?: Band[];
  markers?: Marker[];
  cuts?: Cut[];
  range?: [number, number]; // x range, unix seconds
  yRange?: [number, number];
}

const BAND_FILL: Record<string, string> = {
  anomaly: "rgba(213, 94, 0, 0.18)",
  outage: "rgba(120, 120, 120, 0.25)",
  planned: "rgba(0, 114, 178, 0.14)",
};

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

export function chart(spec: ChartSpec): HTMLElement {
  const bands = spec.bands ?? [];
  const markers = spec.markers ?? [];
  const cuts = spec.cuts ?? [];
  const points = spec.lines.reduce((sum, line) => sum + line.values.filter((v) => v !== null).length, 0);
  const holder = h("div", { class: "chart-canvas" });
  const caption = h(
    "figcaption",
    {},
    h("strong", {}, spec.title),
    ` — ${points} points`,
    bands.length ? `, ${plural(bands.length, "shaded window")}` : "",
    markers.length ? `, ${plural(markers.length, "event")} marked` : "",
  );
  const figure = h(
    "figure",
    {
      class: "chart",
      id: spec.id,
      "data-points": points,
      "data-bands": bands.length,
      "data-markers": markers.length,
    },
    caption,
    holder,
  );
  if (markers.length || bands.length) {
    const list = h("ul", { class: "events" });
    for (const marker of markers) {
      list.append(h("li", { class: `marker-${marker.kind}` }, `▼ ${marker.label} at ${dateTime(new Date(marker.at * 1000))}`));
    }
    const kinds = new Map<string, number>();
    for (const band of bands) kinds.set(band.kind, (kinds.get(band.kind) ?? 0) + 1);
    for (const [kind, count] of kinds) {
      list.append(h("li", { class: `band-${kind}` }, `▮ ${plural(count, `${kind} window`)} shaded`));
    }
    figure.append(list);
  }
  if (!points) {
    holder.append(h("p", { class: "empty" }, "No data in this range."));
    return figure;
  }

  const draw = (u: uPlot): void => {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    for (const band of bands) {
      const x0 = Math.max(left, u.valToPos(band.start, "x", true));
      const x1 = Math.min(left + width, u.valToPos(band.end, "x", true));
      if (x1 <= x0) continue;
      ctx.fillStyle = BAND_FILL[band.kind] ?? BAND_FILL.outage;
      ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
    }
    for (const cut of cuts) {
      const y = u.valToPos(cut.value, "y", true);
      ctx.strokeStyle = cut.colour;
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + width, y);
      ctx.stroke();
      ctx.fillStyle = "#222";
      ctx.font = `${11 * devicePixelRatio}px sans-serif`;
      ctx.textAlign = "right";
      ctx.fillText(cut.label, left + width - 4, y - 3);
    }
    ctx.setLineDash([]);
    for (const marker of markers) {
      const x = u.valToPos(marker.at, "x", true);
      if (x < left || x > left + width) continue;
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      ctx.fillStyle = "#000";
      ctx.beginPath(); // a downward triangle on top: the marker's shape
      ctx.moveTo(x - 6, top);
      ctx.lineTo(x + 6, top);
      ctx.lineTo(x, top + 9);
      ctx.fill();
    }
    ctx.restore();
  };

  const width = (): number => Math.max(280, (holder.clientWidth || holder.parentElement?.clientWidth || 600) - 4);
  const options: uPlot.Options = {
    width: 600,
    height: 200,
    scales: {
      x: { time: true, ...(spec.range ? { range: spec.range } : {}) },
      y: spec.yRange ? { range: spec.yRange } : {},
    },
    axes: [{}, { label: spec.unit, size: 56 }],
    series: [
      {},
      ...spec.lines.map((line) => ({
        label: line.label,
        stroke: line.colour,
        width: 1.5,
        dash: line.dash,
        spanGaps: false,
        points: { show: points < 60, size: 6, fill: line.colour },
      })),
    ],
    hooks: { draw: [draw] },
    legend: { show: true },
  };
  const data = [spec.times, ...spec.lines.map((line) => line.values)] as uPlot.AlignedData;
  requestAnimationFrame(() => {
    const plot = new uPlot({ ...options, width: width() }, data, holder);
    const resize = (): void => {
      if (!holder.isConnected) {
        window.removeEventListener("resize", resize);
        plot.destroy();
        return;
      }
      plot.setSize({ width: width(), height: 200 });
    };
    window.addEventListener("resize", resize);
  });
  return figure;
}
