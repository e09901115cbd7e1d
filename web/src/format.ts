// Risk levels readable without colour (a name and a shape each), a colour-blind-safe palette
// (Okabe-Ito), and times and numbers as operators read them.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { RiskLevel } from "../gen/mining/analytics/v1alpha1/common_pb.js";
import { svg } from "./dom.js";

export const LEVELS = [RiskLevel.CRITICAL, RiskLevel.HIGH, RiskLevel.MEDIUM, RiskLevel.LOW] as const;

export const LEVEL_NAME: Record<number, string> = {
  [RiskLevel.RISK_LEVEL_UNSPECIFIED]: "Unscored",
  [RiskLevel.LOW]: "Low",
  [RiskLevel.MEDIUM]: "Medium",
  [RiskLevel.HIGH]: "High",
  [RiskLevel.CRITICAL]: "Critical",
};

/** Okabe-Ito colours: told apart with the common colour-vision deficiencies. */
export const LEVEL_COLOUR: Record<number, string> = {
  [RiskLevel.RISK_LEVEL_UNSPECIFIED]: "#8a8a8a",
  [RiskLevel.LOW]: "#0072B2",
  [RiskLevel.MEDIUM]: "#E69F00",
  [RiskLevel.HIGH]: "#D55E00",
  [RiskLevel.CRITICAL]: "#CC2A7A",
};

/** Shape per level (circle, triangle, diamond, square; a dash when unscored) as SVG path data. */
const LEVEL_PATH: Record<number, string> = {
  [RiskLevel.RISK_LEVEL_UNSPECIFIED]: "M2 6h8v1H2z",
  [RiskLevel.LOW]: "M6 1.5a4.5 4.5 0 1 0 0.01 0z",
  [RiskLevel.MEDIUM]: "M6 1 11 11H1z",
  [RiskLevel.HIGH]: "M6 0.5 11.5 6 6 11.5 0.5 6z",
  [RiskLevel.CRITICAL]: "M1 1h10v10H1z",
};

export function levelShape(level: number): SVGElement {
  const colour = LEVEL_COLOUR[level] ?? LEVEL_COLOUR[0];
  const icon = svg(
    "svg",
    { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true", class: "shape" },
    svg("path", { d: LEVEL_PATH[level] ?? LEVEL_PATH[0], fill: colour, stroke: "#222", "stroke-width": 0.6 }),
  );
  return icon;
}

/** A level as a badge: shape + name, so it reads without colour. */
export function levelBadge(level: number): HTMLSpanElement {
  const badge = document.createElement("span");
  badge.className = `level level-${(LEVEL_NAME[level] ?? "Unscored").toLowerCase()}`;
  badge.append(levelShape(level), document.createTextNode(LEVEL_NAME[level] ?? "Unscored"));
  return badge;
}

export function toDate(ts: Timestamp | undefined): Date | null {
  if (!ts || (ts.seconds === 0n && ts.nanos === 0)) return null;
  return timestampDate(ts);
}

export function ago(date: Date | null, now = Date.now()): string {
  if (!date) return "never";
  const seconds = Math.max(0, Math.round((now - date.getTime()) / 1000));
  if (seconds < 90) return `${seconds} s ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.round(hours / 24)} d ago`;
}

export function dateTime(date: Date | null): string {
  if (!date) return "—";
  return date.toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

export function percent(value: number): string {
  return `${(value * 100).toFixed(1)} %`;
}

export function number(value: number, digits = 2): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "—";
}
