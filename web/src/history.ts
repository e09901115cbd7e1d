// A miner's history from the HistoryService: readings on a regular grid (min/mean/max per step),
// its risk over time, and its events (failures, outages, planned states, feedback), turned into
// what the charts draw.
import type { ListValue } from "@bufbuild/protobuf/wkt";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { HistoryService, MinerEventKind, type GetMinerTelemetryResponse, type RiskPoint } from "../gen/mining/analytics/v1alpha1/history_pb.js";
import { transport } from "./api.js";
import type { Band, Marker } from "./charts.js";
import { toDate } from "./format.js";

export const historyApi = createClient(HistoryService, transport);

/** The readings the miner page charts, in this order, with their titles. */
export const CHARTED: [string, string][] = [
  ["hashrate_ths", "Hashrate"],
  ["temperature_c", "Temperature"],
  ["fan_speed_rpm", "Fan speed"],
  ["power_w", "Power"],
  ["rejection_rate", "Rejection rate"],
];

export function numbers(list: ListValue | undefined): (number | null)[] {
  return (list?.values ?? []).map((value) => (value.kind.case === "numberValue" ? value.kind.value : null));
}

export function seconds(date: Date | null): number {
  return (date?.getTime() ?? 0) / 1000;
}

/** "FAILURE_MODE_HASH_BOARD" -> "hash board". */
export function plain(label: string): string {
  return label.replace(/^(FAILURE_MODE_|PLANNED_STATE_KIND_|FEEDBACK_VERDICT_)/, "").replace(/_/g, " ").toLowerCase();
}

export interface History {
  telemetry: GetMinerTelemetryResponse;
  risk: RiskPoint[];
  markers: Marker[];
  bands: Band[];
}

export async function loadHistory(minerId: string, start: Date, end: Date): Promise<History> {
  const range = { minerId, start: timestampFromDate(start), end: timestampFromDate(end) };
  const [telemetry, risk, events] = await Promise.all([
    historyApi.getMinerTelemetry({ ...range, step: 0 }),
    historyApi.getMinerRiskHistory(range),
    historyApi.listMinerEvents(range),
  ]);
  const markers: Marker[] = [];
  const bands: Band[] = [];
  for (const event of events.events) {
    const from = seconds(toDate(event.start));
    const to = seconds(toDate(event.end)) || seconds(end);
    switch (event.kind) {
      case MinerEventKind.FAILURE:
        markers.push({ at: from, label: `failure (${plain(event.label) || "unknown mode"})`, kind: "failure" });
        break;
      case MinerEventKind.OUTAGE:
        bands.push({ start: from, end: to, kind: "outage" });
        break;
      case MinerEventKind.PLANNED_STATE:
        bands.push({ start: from, end: to, kind: "planned" });
        break;
      default:
        break;
    }
  }
  return { telemetry, risk: risk.points, markers, bands };
}
