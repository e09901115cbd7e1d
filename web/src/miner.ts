// Miner page: who the miner is, its current risk with the factors behind it, its anomaly scores
// over 24 h / 7 d / 30 d with anomalous windows shaded and failures marked, and (for the writer
// role) buttons to record a failure or feedback on the latest prediction.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { FailureMode, FailureModeSchema } from "../gen/mining/analytics/v1alpha1/common_pb.js";
import type { PredictFailureRiskResponse } from "../gen/mining/analytics/v1alpha1/scoring_pb.js";
import { FeedbackVerdict, type FailureEvent } from "../gen/mining/analytics/v1alpha1/telemetry_pb.js";
import { fleet, scoring, sentence, telemetry } from "./api.js";
import { chart, type Band } from "./charts.js";
import { h } from "./dom.js";
import { ago, dateTime, levelBadge, number, percent, toDate } from "./format.js";
import { CHARTED, loadHistory, numbers, seconds, type History } from "./history.js";
import { session } from "./session.js";
import { store } from "./store.js";

const RANGES: Record<string, number> = { "24 h": 24, "7 d": 7 * 24, "30 d": 30 * 24 };
const DETECT_CHUNK_H = 7 * 24; // DetectAnomalies answers at most 7 days per call
let rangeName = "24 h";

function modeLabel(mode: FailureMode): string {
  const value = FailureModeSchema.values.find((v) => v.number === mode);
  return (value?.name ?? "FAILURE_MODE_OTHER").replace(/^FAILURE_MODE_/, "").replace(/_/g, " ").toLowerCase();
}

export function renderMiner(main: HTMLElement, minerId: string): () => void {
  const title = h("h1", {}, `Miner ${minerId}`);
  const facts = h("dl", { class: "facts" });
  const risk = h("section", { class: "card", "aria-labelledby": "risk-title" }, h("h2", { id: "risk-title" }, "Current risk"), h("p", {}, "Loading…"));
  const charts = h("section", { class: "card charts", "aria-labelledby": "charts-title" });
  const events = h("section", { class: "card", "aria-labelledby": "events-title" });
  const actions = h("section", { class: "card", "aria-labelledby": "actions-title" });
  const side = h("div", { class: "miner-side" }, h("section", { class: "card", "aria-label": "Miner details" }, facts), events);
  if (session.canWrite) side.append(actions);
  main.replaceChildren(
    h("p", { class: "back" }, h("a", { href: "#/fleet" }, "← Fleet")),
    title,
    h("div", { class: "miner-top" }, risk, side),
    charts,
  );

  let current: PredictFailureRiskResponse | null = null;
  let failures: FailureEvent[] = [];
  let end = new Date();
  let alive = true;

  async function loadMiner(): Promise<void> {
    try {
      const miner = await fleet.getMiner({ minerId });
      const lastSeen = toDate(miner.lastSeen);
      // Ranges end just after the last reading (the history API treats its end as exclusive).
      end = new Date((lastSeen ?? new Date()).getTime() + 5 * 60_000);
      facts.replaceChildren(
        ...(
          [
            ["Risk", levelBadge(miner.riskLevel)],
            ["Hardware", `${miner.make} ${miner.hardwareModel}`.trim() || "—"],
            ["Site", miner.site || "—"],
            ["Serial", miner.serial || "—"],
            ["MAC", miner.mac || "—"],
            ["Last seen", `${ago(lastSeen)} (${dateTime(lastSeen)})`],
            ["Samples", String(miner.sampleCount)],
          ] as [string, Node | string][]
        ).flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
      );
    } catch (error) {
      facts.replaceWith(h("p", { class: "problem", role: "alert" }, sentence(error, "Loading the miner")));
      throw error;
    }
  }

  async function loadRisk(): Promise<void> {
    try {
      current = await scoring.predictFailureRisk({ minerId, explain: true });
      const factors = h(
        "table",
        { class: "factors" },
        h("caption", {}, `What drives the score: the ${Math.min(6, current.riskFactors.length)} largest of ${current.riskFactors.length} factors (share of the model's output, the miner's recent value, the fleet norm)`),
        h("thead", {}, h("tr", {}, ...["Factor", "Importance", "Recent", "Fleet norm"].map((t) => h("th", { scope: "col" }, t)))),
        h(
          "tbody",
          {},
          ...current.riskFactors.slice(0, 6).map((factor) =>
            h(
              "tr",
              {},
              h("th", { scope: "row" }, factor.feature.replace(/_/g, " ")),
              h("td", { class: "num" }, h("span", { class: "bar", style: `width:${Math.round(Math.min(1, factor.importance) * 80)}px` }), ` ${percent(factor.importance)}`),
              h("td", { class: "num" }, `${number(factor.recentValue)} ${factor.unit}`),
              h("td", { class: "num" }, `${number(factor.fleetNorm)} ${factor.unit}`),
            ),
          ),
        ),
      );
      risk.replaceChildren(
        h("h2", { id: "risk-title" }, "Current risk"),
        h(
          "p",
          { class: "risk-now" },
          levelBadge(current.riskLevel),
          h("span", { class: "score" }, ` ${percent(current.riskScore)} `),
          `chance of a hardware failure within ${current.horizonHours} h`,
          current.likelyFailureMode ? ` · likely ${modeLabel(current.likelyFailureMode)}` : "",
        ),
        h(
          "p",
          { class: "hint" },
          `Model ${current.modelVersion}, window ${dateTime(toDate(current.windowStart))} – ${dateTime(toDate(current.windowEnd))} (${current.windowSamples} samples).`,
        ),
        h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Risk factors" }, factors),
      );
    } catch (error) {
      risk.replaceChildren(h("h2", { id: "risk-title" }, "Current risk"), h("p", { class: "problem" }, sentence(error, "Scoring this miner")));
    }
  }

  async function loadFailures(): Promise<void> {
    try {
      failures = (await telemetry.listFailures({ minerId, pageSize: 100 })).failures;
    } catch (error) {
      failures = [];
      events.replaceChildren(h("p", { class: "problem" }, sentence(error, "Listing failures")));
      return;
    }
    events.replaceChildren(
      h("h2", { id: "events-title" }, "Recorded failures"),
      failures.length
        ? h(
            "ul",
            { class: "failures" },
            ...failures.map((f) => {
              const repaired = toDate(f.repairedAt);
              return h("li", {}, `${dateTime(toDate(f.occurredAt))}: ${modeLabel(f.mode)}`, repaired ? `, repaired ${dateTime(repaired)}` : "", f.note ? ` — ${f.note}` : "");
            }),
          )
        : h("p", {}, "No failures recorded."),
    );
  }

  /** Where the charts end: just after the last reading, or after the newest recorded failure when that
   * came later (a failed miner stops reporting: the failure recorded now must still be on its charts). */
  function chartEnd(): Date {
    const newest = Math.max(0, ...failures.map((f) => toDate(f.occurredAt)?.getTime() ?? 0));
    return new Date(Math.max(end.getTime(), newest + 5 * 60_000));
  }

  async function loadCharts(): Promise<void> {
    const hours = RANGES[rangeName];
    const stop = chartEnd();
    const start = new Date(stop.getTime() - hours * 3600_000);
    const buttons = h(
      "div",
      { class: "ranges", role: "group", "aria-label": "Time range" },
      ...Object.keys(RANGES).map((name) =>
        h(
          "button",
          {
            type: "button",
            "aria-pressed": name === rangeName ? "true" : "false",
            onclick: () => {
              rangeName = name;
              void loadCharts();
            },
          },
          name,
        ),
      ),
    );
    const status = h("p", { class: "hint", "aria-live": "polite" }, `Loading ${rangeName}…`);
    charts.replaceChildren(h("h2", { id: "charts-title" }, "History"), buttons, status);
    const range: [number, number] = [start.getTime() / 1000, stop.getTime() / 1000];
    const parts: HTMLElement[] = [];
    const [pastResult, anomalyResult] = await Promise.allSettled([loadHistory(minerId, start, stop), detect(start, stop)]);
    if (!alive) return;
    const anomalies = anomalyResult.status === "fulfilled" ? anomalyResult.value : null;
    const past: History | null = pastResult.status === "fulfilled" ? pastResult.value : null;
    const anomalyBands = anomalies?.bands ?? [];
    if (pastResult.status === "rejected" || !past) {
      parts.push(h("p", { class: "problem" }, sentence(pastResult.status === "rejected" ? pastResult.reason : null, "Loading the miner's history")));
    } else {
      const { telemetry, risk, markers, bands } = past;
      const times = telemetry.times.map((t) => seconds(toDate(t)));
      const shaded = [...anomalyBands, ...bands];
      for (const [name, title] of CHARTED) {
        const series = telemetry.series.find((s) => s.name === name);
        if (!series) continue;
        parts.push(
          chart({
            id: `chart-${name.replace(/_/g, "-")}`,
            title: `${title} (${series.unit})`,
            unit: series.unit,
            times,
            lines: [
              { label: "mean", values: numbers(series.mean), colour: "#0072B2" },
              { label: "max", values: numbers(series.max), colour: "#56B4E9", dash: [4, 3] },
            ],
            bands: shaded,
            markers,
            range,
          }),
        );
      }
      parts.push(
        chart({
          id: "chart-risk",
          title: "Failure risk over time, with the level cut-offs (server defaults 0.25 / 0.5 / 0.75)",
          unit: "risk",
          times: risk.map((p) => seconds(toDate(p.time))),
          lines: [{ label: "risk score", values: risk.map((p) => p.riskScore), colour: "#CC2A7A" }],
          bands: shaded,
          markers,
          cuts: [
            { value: 0.25, label: "Medium", colour: "#E69F00" },
            { value: 0.5, label: "High", colour: "#D55E00" },
            { value: 0.75, label: "Critical", colour: "#CC2A7A" },
          ],
          range,
          yRange: [0, 1],
        }),
      );
    }
    if (anomalyResult.status === "rejected" || !anomalies) {
      parts.push(h("p", { class: "problem" }, sentence(anomalyResult.status === "rejected" ? anomalyResult.reason : null, "Detecting anomalies")));
    } else {
      parts.push(
        chart({
          id: "chart-anomaly",
          title: "Anomaly score (autoencoder reconstruction error)",
          unit: "score",
          times: anomalies.times,
          lines: [{ label: "anomaly score", values: anomalies.scores, colour: "#0072B2" }],
          bands: anomalyBands,
          markers: past?.markers ?? [],
          cuts: anomalies.threshold ? [{ value: anomalies.threshold, label: `threshold ${number(anomalies.threshold, 3)}`, colour: "#D55E00" }] : [],
          range,
        }),
      );
    }
    status.textContent = `The ${rangeName} up to ${dateTime(stop)} (${stop > end ? "just after the newest recorded failure" : "just after the last reading"}); shaded: anomalous windows (orange), outages (grey), planned states (blue); ▼ failures.`;
    charts.append(h("div", { class: "charts-grid" }, ...parts));
  }

  /** The autoencoder's windows over the range (DetectAnomalies answers at most 7 days a call). */
  async function detect(start: Date, stop: Date): Promise<{ times: number[]; scores: number[]; bands: Band[]; threshold: number }> {
    const times: number[] = [];
    const scores: number[] = [];
    const bands: Band[] = [];
    let threshold = 0;
    for (let from = start.getTime(); from < stop.getTime(); from += DETECT_CHUNK_H * 3600_000) {
      const to = Math.min(stop.getTime(), from + DETECT_CHUNK_H * 3600_000);
      const reply = await scoring.detectAnomalies({ minerId, start: timestampFromDate(new Date(from)), end: timestampFromDate(new Date(to)) });
      threshold = reply.threshold;
      let previous = times.length ? times[times.length - 1] : from / 1000;
      for (const window of reply.windows) {
        const at = seconds(toDate(window.windowEnd));
        if (times.length && at <= times[times.length - 1]) continue;
        times.push(at);
        scores.push(window.score);
        if (window.isAnomaly) {
          const last = bands[bands.length - 1];
          if (last && last.end >= previous) last.end = at;
          else bands.push({ start: previous, end: at, kind: "anomaly" });
        }
        previous = at;
      }
    }
    return { times, scores, bands, threshold };
  }

  function renderActions(): void {
    const modeSelect = h(
      "select",
      { id: "failure-mode" },
      ...FailureModeSchema.values.filter((v) => v.number !== 0).map((v) => h("option", { value: String(v.number) }, modeLabel(v.number))),
    );
    const note = h("input", { id: "failure-note", type: "text", maxlength: 500 });
    const result = h("p", { class: "result", role: "status", "aria-live": "polite" });
    const failureForm = h(
      "form",
      { class: "inline-form", "aria-label": "Record a failure" },
      h("div", {}, h("label", { for: "failure-mode" }, "Failure mode"), modeSelect),
      h("div", {}, h("label", { for: "failure-note" }, "Note"), note),
      h("button", { type: "submit" }, "Record failure now"),
    );
    failureForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await telemetry.recordFailure({
          minerId,
          occurredAt: timestampFromDate(new Date()),
          mode: Number(modeSelect.value) as FailureMode,
          note: note.value,
        });
        result.textContent = "Failure recorded.";
        await loadFailures();
        await loadCharts();
      } catch (error) {
        result.textContent = sentence(error, "Recording the failure");
      }
    });
    const feedback = (verdict: FeedbackVerdict, label: string) =>
      h(
        "button",
        {
          type: "button",
          onclick: async () => {
            try {
              await telemetry.recordFeedback({ minerId, verdict, modelVersion: current?.modelVersion ?? "" });
              result.textContent = `Feedback recorded: ${label.toLowerCase()}.`;
            } catch (error) {
              result.textContent = sentence(error, "Recording feedback");
            }
          },
        },
        label,
      );
    actions.replaceChildren(
      h("h2", { id: "actions-title" }, "Record"),
      failureForm,
      h(
        "div",
        { class: "feedback", role: "group", "aria-label": "Feedback on the latest prediction" },
        h("span", {}, "The latest prediction was: "),
        feedback(FeedbackVerdict.CONFIRMED, "Confirmed"),
        feedback(FeedbackVerdict.FALSE_ALARM, "False alarm"),
      ),
      result,
    );
  }

  const unsubscribe = store.subscribe((changed) => {
    if (changed?.includes(minerId)) void loadRisk();
  });
  void (async () => {
    try {
      await loadMiner();
    } catch {
      return;
    }
    if (session.canWrite) renderActions();
    await Promise.all([loadRisk(), loadFailures()]);
    await loadCharts();
  })();
  return () => {
    alive = false;
    unsubscribe();
  };
}

