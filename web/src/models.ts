// Models page: the active versions with their quality metrics, the registry with activate and
// roll back, training jobs with live progress from the WatchTrainJob stream, and the train form
// (for the trainer role) with the documented defaults.
import { ModelKind } from "../gen/mining/analytics/v1alpha1/common_pb.js";
import { JobState, type ModelVersion, type TrainJob } from "../gen/mining/analytics/v1alpha1/training_pb.js";
import { fleet, sentence, training } from "./api.js";
import { h } from "./dom.js";
import { dateTime, number, toDate } from "./format.js";
import { session } from "./session.js";

/** The documented REST defaults (README): LSTM 50 epochs / 32 / 0.2, autoencoder 100 / 32 / 0.1. */
const DEFAULTS: Record<number, { epochs: number; batchSize: number; validationSplit: number }> = {
  [ModelKind.LSTM]: { epochs: 50, batchSize: 32, validationSplit: 0.2 },
  [ModelKind.AUTOENCODER]: { epochs: 100, batchSize: 32, validationSplit: 0.1 },
};
const KIND_NAME: Record<number, string> = { [ModelKind.LSTM]: "Failure risk (LSTM)", [ModelKind.AUTOENCODER]: "Anomaly (autoencoder)" };
const STATE_NAME: Record<number, string> = {
  [JobState.QUEUED]: "Queued",
  [JobState.RUNNING]: "Running",
  [JobState.SUCCEEDED]: "Succeeded",
  [JobState.FAILED]: "Failed",
  [JobState.CANCELLED]: "Cancelled",
  [JobState.INTERRUPTED]: "Interrupted",
};
const FINAL = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED]);

/** Validation metrics, quality first; counts without decimals. */
function metricsText(metrics: Record<string, number>): string {
  const keys = Object.keys(metrics)
    .filter((k) => /^val_|^threshold$/.test(k))
    .sort((a, b) => Number(/windows|rate/.test(a)) - Number(/windows|rate/.test(b)) || a.localeCompare(b));
  const show = (k: string): string => {
    const value = metrics[k];
    const text = Number.isInteger(value) ? String(value) : Number.isFinite(value) ? number(value, 3) : "—";
    return `${k.replace(/^val_/, "").replace(/_/g, " ")} ${text}`;
  };
  return keys.length ? keys.map(show).join(" · ") : "—";
}

function duration(seconds: number): string {
  if (!seconds) return "—";
  return seconds < 90 ? `${seconds.toFixed(0)} s` : `${(seconds / 60).toFixed(1)} min`;
}

export function renderModels(main: HTMLElement): () => void {
  const active = h("section", { class: "card", "aria-labelledby": "active-title" }, h("h2", { id: "active-title" }, "Active models"));
  const registry = h("section", { class: "card", "aria-labelledby": "registry-title" }, h("h2", { id: "registry-title" }, "Registry"));
  const jobs = h("section", { class: "card", "aria-labelledby": "jobs-title" }, h("h2", { id: "jobs-title" }, "Training jobs"));
  const result = h("p", { class: "result", role: "status", "aria-live": "polite" });
  main.replaceChildren(h("h1", {}, "Models"), result, active, registry);
  if (session.canTrain) main.append(trainForm());
  main.append(jobs);

  const watching = new Map<string, AbortController>();
  const jobRows = new Map<string, HTMLTableRowElement>();
  let alive = true;

  async function loadActive(): Promise<void> {
    try {
      const status = await fleet.status({});
      const rows: [string, typeof status.lstmModelInfo][] = [
        [KIND_NAME[ModelKind.LSTM], status.lstmModelInfo],
        [KIND_NAME[ModelKind.AUTOENCODER], status.autoencoderInfo],
      ];
      active.replaceChildren(
        h("h2", { id: "active-title" }, "Active models"),
        h(
          "ul",
          { class: "active-models" },
          ...rows.map(([name, info]) =>
            h("li", {}, h("strong", {}, name), ": ", info?.loaded ? `${info.version}, trained ${dateTime(toDate(info.trainedAt))}` : "not trained yet"),
          ),
        ),
        h(
          "p",
          { class: "hint" },
          `Horizon ${status.horizonHours} h · anomaly threshold ${number(status.anomalyThreshold, 3)} · ${status.miners} miners, ${status.samples} samples, ${status.failureEvents} failures · server ${status.serverVersion}`,
        ),
      );
    } catch (error) {
      active.append(h("p", { class: "problem" }, sentence(error, "Reading the server status")));
    }
  }

  async function loadRegistry(): Promise<void> {
    let models: ModelVersion[];
    const took = new Map<string, number>(); // job id -> training seconds
    try {
      const [listed, recent] = await Promise.all([training.listModels({}), training.listTrainJobs({ pageSize: 100 })]);
      models = listed.models;
      for (const job of recent.jobs) took.set(job.jobId, job.elapsedSeconds);
    } catch (error) {
      registry.replaceChildren(h("h2", { id: "registry-title" }, "Registry"), h("p", { class: "problem" }, sentence(error, "Listing models")));
      return;
    }
    const sections: HTMLElement[] = [];
    for (const kind of [ModelKind.LSTM, ModelKind.AUTOENCODER]) {
      const versions = models.filter((m) => m.modelKind === kind); // newest first
      const activeIndex = versions.findIndex((m) => m.active);
      const previous = activeIndex >= 0 ? versions[activeIndex + 1] : undefined;
      const rows = versions.map((m) =>
        h(
          "tr",
          { "data-version": m.version, class: m.active ? "active" : null },
          h("th", { scope: "row" }, m.version),
          h("td", {}, dateTime(toDate(m.trainedAt))),
          h("td", {}, duration(took.get(m.jobId) ?? 0)),
          h("td", {}, m.active ? "✔ Active" : ""),
          h("td", { class: "metrics" }, metricsText(m.metrics)),
          session.canTrain
            ? h(
                "td",
                {},
                m.active
                  ? ""
                  : h("button", { type: "button", onclick: () => activate(kind, m.version, "Activated") }, m === previous ? "Roll back to this" : "Activate"),
              )
            : null,
        ),
      );
      sections.push(
        h("h3", {}, KIND_NAME[kind]),
        versions.length
          ? h(
              "div",
              { class: "table-wrap", tabindex: 0, role: "region", "aria-label": `${KIND_NAME[kind]} versions` },
              h(
                "table",
                { class: "registry", "data-kind": ModelKind[kind] },
                h(
                  "thead",
                  {},
                  h("tr", {}, ...["Version", "Trained", "Training time", "State", "Validation metrics", session.canTrain ? "Action" : ""].filter(Boolean).map((t) => h("th", { scope: "col" }, t))),
                ),
                h("tbody", {}, ...rows),
              ),
            )
          : h("p", {}, "No versions yet."),
      );
    }
    registry.replaceChildren(h("h2", { id: "registry-title" }, "Registry"), ...sections);
  }

  async function activate(kind: ModelKind, version: string, verb: string): Promise<void> {
    result.textContent = `Activating ${version}…`;
    try {
      await training.activateModel({ modelKind: kind, version });
      result.textContent = `${verb} ${version}.`;
      await Promise.all([loadActive(), loadRegistry()]);
    } catch (error) {
      result.textContent = sentence(error, `Activating ${version}`);
    }
  }

  function jobRow(job: TrainJob): HTMLTableRowElement {
    const epochs = job.params?.epochs ?? 0;
    const done = FINAL.has(job.state);
    const progress = h("progress", { max: Math.max(1, epochs), value: job.epoch, "aria-label": `Job ${job.jobId} progress` });
    return h(
      "tr",
      { "data-job": job.jobId, "data-state": STATE_NAME[job.state] ?? "Unknown" },
      h("th", { scope: "row" }, job.jobId),
      h("td", {}, KIND_NAME[job.modelKind] ?? "—"),
      h("td", { class: "state" }, STATE_NAME[job.state] ?? "—"),
      h("td", {}, progress, ` epoch ${job.epoch} of ${epochs}`),
      h("td", { class: "num" }, job.epoch ? `${number(job.trainLoss, 4)} / ${number(job.valLoss, 4)}` : "—"),
      h(
        "td",
        {},
        done
          ? job.modelVersion
            ? `${job.modelVersion}${job.promoted ? " (promoted)" : " (kept the active version)"}`
            : job.error || job.message || "—"
          : job.message || "",
      ),
      h("td", {}, dateTime(toDate(job.createdAt))),
    ) as HTMLTableRowElement;
  }

  function showJob(job: TrainJob, body: HTMLElement): void {
    const row = jobRow(job);
    const existing = jobRows.get(job.jobId);
    if (existing) existing.replaceWith(row);
    else body.prepend(row);
    jobRows.set(job.jobId, row);
  }

  let jobBody: HTMLElement = h("tbody");
  async function loadJobs(): Promise<void> {
    let list: TrainJob[];
    try {
      list = (await training.listTrainJobs({ pageSize: 20 })).jobs;
    } catch (error) {
      jobs.replaceChildren(h("h2", { id: "jobs-title" }, "Training jobs"), h("p", { class: "problem" }, sentence(error, "Listing training jobs")));
      return;
    }
    jobBody = h("tbody");
    jobRows.clear();
    jobs.replaceChildren(
      h("h2", { id: "jobs-title" }, "Training jobs"),
      h(
        "div",
        { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Training jobs" },
        h(
          "table",
          { class: "jobs" },
          h("thead", {}, h("tr", {}, ...["Job", "Model", "State", "Progress", "Train / val loss", "Result", "Created"].map((t) => h("th", { scope: "col" }, t)))),
          jobBody,
        ),
      ),
    );
    for (const job of [...list].reverse()) {
      showJob(job, jobBody);
      if (!FINAL.has(job.state)) void watch(job.jobId);
    }
  }

  /** Follows a job on the WatchTrainJob stream until it is final, then refreshes the registry. */
  async function watch(jobId: string): Promise<void> {
    if (watching.has(jobId)) return;
    const abort = new AbortController();
    watching.set(jobId, abort);
    let final = false;
    try {
      for await (const job of training.watchTrainJob({ jobId }, { signal: abort.signal })) {
        if (!alive) return;
        showJob(job, jobBody);
        final = FINAL.has(job.state);
      }
    } catch (error) {
      if (alive) result.textContent = sentence(error, `Watching job ${jobId}`);
    } finally {
      watching.delete(jobId);
    }
    if (alive && final) await Promise.all([loadActive(), loadRegistry()]);
  }

  function trainForm(): HTMLElement {
    const kind = h(
      "select",
      { id: "train-kind" },
      h("option", { value: String(ModelKind.LSTM) }, KIND_NAME[ModelKind.LSTM]),
      h("option", { value: String(ModelKind.AUTOENCODER) }, KIND_NAME[ModelKind.AUTOENCODER]),
    );
    const epochs = h("input", { id: "train-epochs", type: "number", min: 1, max: 1000, step: 1, required: true });
    const batch = h("input", { id: "train-batch", type: "number", min: 1, max: 4096, step: 1, required: true });
    const split = h("input", { id: "train-split", type: "number", min: 0.05, max: 0.5, step: 0.05, required: true });
    const hint = h("p", { class: "hint", id: "train-hint" });
    const setDefaults = (): void => {
      const d = DEFAULTS[Number(kind.value)];
      epochs.value = String(d.epochs);
      batch.value = String(d.batchSize);
      split.value = String(d.validationSplit);
      hint.textContent = `Defaults for this model: ${d.epochs} epochs, batch size ${d.batchSize}, validation split ${d.validationSplit}. Training stops early when the validation loss stops improving.`;
    };
    kind.addEventListener("change", setDefaults);
    setDefaults();
    const form = h(
      "form",
      { class: "card train", "aria-labelledby": "train-title" },
      h("h2", { id: "train-title" }, "Train a model"),
      h("div", { class: "inline-form" },
        h("div", {}, h("label", { for: "train-kind" }, "Model"), kind),
        h("div", {}, h("label", { for: "train-epochs" }, "Epochs"), epochs),
        h("div", {}, h("label", { for: "train-batch" }, "Batch size"), batch),
        h("div", {}, h("label", { for: "train-split" }, "Validation split"), split),
        h("button", { type: "submit" }, "Start training"),
      ),
      hint,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const job = await training.train({
          modelKind: Number(kind.value) as ModelKind,
          epochs: Number(epochs.value),
          batchSize: Number(batch.value),
          validationSplit: Number(split.value),
        });
        result.textContent = `Training job ${job.jobId} started.`;
        showJob(job, jobBody);
        void watch(job.jobId);
      } catch (error) {
        result.textContent = sentence(error, "Starting the training job");
      }
    });
    return form;
  }

  void Promise.all([loadActive(), loadRegistry(), loadJobs()]);
  return () => {
    alive = false;
    for (const abort of watching.values()) abort.abort();
  };
}
