// Fleet page: every miner riskiest first, counts per level, filters, search, and a compact map
// (one cell per miner, grouped by site) for fleets of thousands. Live updates re-render in place.
import { RiskLevel } from "../gen/mining/analytics/v1alpha1/common_pb.js";
import { sentence } from "./api.js";
import { clear, h } from "./dom.js";
import { LEVEL_COLOUR, LEVEL_NAME, LEVELS, ago, dateTime, levelBadge, levelShape, percent } from "./format.js";
import { byRisk, store, type MinerRow } from "./store.js";

const STALE_MS = 15 * 60 * 1000;
const PAGE = 100;

interface Filters {
  level: string; // "" or a RiskLevel number as text
  site: string;
  hardware: string;
  search: string;
  view: "list" | "map";
}

const filters: Filters = { level: "", site: "", hardware: "", search: "", view: "list" };
let shown = PAGE;

function matches(row: MinerRow, f: Filters): boolean {
  if (f.level !== "" && row.riskLevel !== Number(f.level)) return false;
  if (f.site && row.site !== f.site) return false;
  if (f.hardware && row.hardwareModel !== f.hardware) return false;
  if (f.search) {
    const needle = f.search.toLowerCase();
    const bare = /^[0-9a-f:-]{4,}$/.test(needle) ? needle.replace(/[:-]/g, "") : "";
    const mac = row.mac.toLowerCase();
    const found =
      row.id.toLowerCase().includes(needle) ||
      row.serial.toLowerCase().includes(needle) ||
      mac.includes(needle) ||
      (bare.length > 0 && mac.replace(/[:-]/g, "").includes(bare));
    if (!found) return false;
  }
  return true;
}

export function renderFleet(main: HTMLElement): () => void {
  const counts = h("div", { class: "counts", role: "group", "aria-label": "Miners per risk level" });
  const summary = h("p", { class: "summary", "aria-live": "polite" });
  const body = h("div", { class: "fleet-body" });
  const siteSelect = h("select", { id: "f-site" });
  const hardwareSelect = h("select", { id: "f-hardware" });
  const levelSelect = h(
    "select",
    { id: "f-level" },
    h("option", { value: "" }, "All levels"),
    ...[...LEVELS, RiskLevel.RISK_LEVEL_UNSPECIFIED].map((level) =>
      h("option", { value: String(level) }, LEVEL_NAME[level]),
    ),
  );
  const search = h("input", {
    id: "f-search",
    type: "search",
    placeholder: "id, IP, serial or MAC",
    autocomplete: "off",
  });
  const listButton = h("button", { type: "button", class: "toggle" }, "List");
  const mapButton = h("button", { type: "button", class: "toggle" }, "Map by site");

  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter miners" },
    h("div", {}, h("label", { for: "f-search" }, "Search"), search),
    h("div", {}, h("label", { for: "f-level" }, "Risk level"), levelSelect),
    h("div", {}, h("label", { for: "f-site" }, "Site"), siteSelect),
    h("div", {}, h("label", { for: "f-hardware" }, "Hardware model"), hardwareSelect),
    h("div", { class: "views", role: "group", "aria-label": "View" }, listButton, mapButton),
  );
  form.addEventListener("submit", (event) => event.preventDefault());
  search.value = filters.search;

  main.replaceChildren(h("h1", {}, "Fleet"), counts, form, summary, body);

  const onFilter = (): void => {
    filters.search = search.value.trim();
    filters.level = levelSelect.value;
    filters.site = siteSelect.value;
    filters.hardware = hardwareSelect.value;
    shown = PAGE;
    render(null);
  };
  search.addEventListener("input", onFilter);
  for (const select of [levelSelect, siteSelect, hardwareSelect]) select.addEventListener("change", onFilter);
  listButton.addEventListener("click", () => {
    filters.view = "list";
    render(null);
  });
  mapButton.addEventListener("click", () => {
    filters.view = "map";
    render(null);
  });

  let options = "";
  function fillOptions(rows: MinerRow[]): void {
    const sites = [...new Set(rows.map((r) => r.site).filter(Boolean))].sort();
    const models = [...new Set(rows.map((r) => r.hardwareModel).filter(Boolean))].sort();
    const key = `${sites.join("|")}#${models.join("|")}`;
    if (key === options) return;
    options = key;
    siteSelect.replaceChildren(h("option", { value: "" }, "All sites"), ...sites.map((s) => h("option", { value: s }, s)));
    hardwareSelect.replaceChildren(
      h("option", { value: "" }, "All models"),
      ...models.map((m) => h("option", { value: m }, m)),
    );
    siteSelect.value = filters.site;
    hardwareSelect.value = filters.hardware;
  }

  function renderCounts(rows: MinerRow[]): void {
    const perLevel = new Map<number, number>();
    for (const row of rows) perLevel.set(row.riskLevel, (perLevel.get(row.riskLevel) ?? 0) + 1);
    clear(counts);
    for (const level of LEVELS) {
      const pressed = filters.level === String(level);
      counts.append(
        h(
          "button",
          {
            type: "button",
            class: "count",
            "data-level": LEVEL_NAME[level].toLowerCase(),
            "aria-pressed": pressed ? "true" : "false",
            onclick: () => {
              filters.level = pressed ? "" : String(level);
              levelSelect.value = filters.level;
              shown = PAGE;
              render(null);
            },
          },
          levelShape(level),
          h("span", { class: "count-name" }, LEVEL_NAME[level]),
          h("strong", { class: "count-value" }, String(perLevel.get(level) ?? 0)),
        ),
      );
    }
  }

  function render(changed: string[] | null): void {
    if (!store.loaded) return;
    const all = [...store.rows.values()];
    fillOptions(all);
    renderCounts(all);
    listButton.setAttribute("aria-pressed", String(filters.view === "list"));
    mapButton.setAttribute("aria-pressed", String(filters.view === "map"));
    const visible = all.filter((row) => matches(row, filters)).sort(byRisk);
    if (filters.view === "map") {
      summary.textContent = `${visible.length} of ${all.length} miners, one cell each, riskiest first within each site.`;
      renderMap(body, visible);
    } else {
      const limit = Math.min(shown, visible.length);
      summary.textContent = store.complete
        ? `Showing ${limit} of ${visible.length} matching miners (${all.length} in the fleet), riskiest first.`
        : `Showing ${limit} of ${visible.length} matching miners, riskiest first; loading the fleet: ${all.length} of ${store.total} miners so far…`;
      renderTable(body, visible.slice(0, limit), visible.length > limit, changed);
    }
    // Timings a person can read in DevTools (and bench/console_timing.py reads): the first full
    // render after navigation, and each render that shows a live update.
    if (!performance.getEntriesByName("fleet-rendered").length) performance.mark("fleet-rendered");
    if (store.complete && !performance.getEntriesByName("fleet-complete").length) performance.mark("fleet-complete");
    if (changed) performance.mark("fleet-live-rendered", { detail: changed });
  }

  function renderTable(target: HTMLElement, rows: MinerRow[], more: boolean, changed: string[] | null): void {
    const now = Date.now();
    const tbody = h("tbody");
    for (const row of rows) {
      const stale = !row.lastSeen || now - row.lastSeen.getTime() > STALE_MS;
      const fresh = changed?.includes(row.id) ?? false;
      tbody.append(
        h(
          "tr",
          { "data-miner-id": row.id, class: fresh ? "flash" : null },
          h("th", { scope: "row" }, h("a", { href: `#/miner/${encodeURIComponent(row.id)}` }, row.id)),
          h("td", { class: "risk" }, levelBadge(row.riskLevel)),
          h("td", { class: "num" }, row.riskLevel ? percent(row.riskScore) : "—"),
          h("td", {}, row.isAnomaly ? h("span", { class: "anomaly" }, "⚠ Anomaly") : "—"),
          h("td", {}, row.hardwareModel || "—"),
          h("td", {}, row.site || "—"),
          h("td", { title: dateTime(row.lastSeen) }, ago(row.lastSeen, now)),
          h("td", {}, stale ? h("span", { class: "stale" }, "Stale") : "Fresh"),
        ),
      );
    }
    const table = h(
      "table",
      { class: "fleet" },
      h("caption", { class: "visually-hidden" }, "Miners, riskiest first"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ...["Miner", "Risk level", "Risk score", "Anomaly", "Hardware", "Site", "Last seen", "Data"].map((t) =>
            h("th", { scope: "col" }, t),
          ),
        ),
      ),
      tbody,
    );
    const wrap = h("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": "Miners" }, table);
    target.replaceChildren(wrap);
    if (more) {
      target.append(
        h(
          "button",
          {
            type: "button",
            class: "more",
            onclick: () => {
              shown += PAGE;
              render(null);
            },
          },
          `Show ${PAGE} more`,
        ),
      );
    }
  }

  function renderMap(target: HTMLElement, rows: MinerRow[]): void {
    const bySite = new Map<string, MinerRow[]>();
    for (const row of rows) {
      const site = row.site || "(no site)";
      if (!bySite.has(site)) bySite.set(site, []);
      bySite.get(site)!.push(row);
    }
    const sections: HTMLElement[] = [];
    for (const site of [...bySite.keys()].sort()) {
      const miners = bySite.get(site)!;
      const tally = LEVELS.map((level) => `${miners.filter((m) => m.riskLevel === level).length} ${LEVEL_NAME[level].toLowerCase()}`).join(", ");
      const canvas = drawSite(miners);
      sections.push(
        h(
          "section",
          { class: "site", "aria-label": `Site ${site}` },
          h("h2", {}, `${site} `, h("span", { class: "tally" }, `${miners.length} miners: ${tally}`)),
          canvas,
        ),
      );
    }
    target.replaceChildren(
      h(
        "p",
        { class: "legend" },
        ...LEVELS.flatMap((level) => [levelShape(level), ` ${LEVEL_NAME[level]}  `]),
        " · click a cell to open its miner",
      ),
      ...sections,
    );
  }

  // Live updates arrive in bursts (a model activation rescores the whole fleet): render at most
  // once per frame, with every miner that changed since the last one.
  let pending: Set<string> | null = new Set();
  let scheduled = false;
  const unsubscribe = store.subscribe((changed) => {
    if (changed === null) pending = null;
    else if (pending) for (const id of changed) pending.add(id);
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      const ids = pending ? [...pending] : null;
      pending = new Set();
      render(ids);
    });
  });
  store.load().then(
    () => render(null),
    (error) => {
      body.replaceChildren(h("p", { class: "problem", role: "alert" }, sentence(error, "Loading the fleet")));
    },
  );
  render(null);
  return unsubscribe;
}

const CELL = 12;
const GAP = 2;

/** One canvas per site: a cell per miner in its level's colour and shape. */
function drawSite(miners: MinerRow[]): HTMLCanvasElement {
  const width = Math.max(200, Math.min(1200, (document.querySelector("main")?.clientWidth ?? 800) - 24));
  const columns = Math.max(1, Math.floor(width / (CELL + GAP)));
  const rows = Math.ceil(miners.length / columns);
  const canvas = document.createElement("canvas");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = columns * (CELL + GAP) * ratio;
  canvas.height = Math.max(1, rows) * (CELL + GAP) * ratio;
  canvas.style.width = `${columns * (CELL + GAP)}px`;
  canvas.style.height = `${Math.max(1, rows) * (CELL + GAP)}px`;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `${miners.length} miners; the list view reads them one by one`);
  const context = canvas.getContext("2d");
  if (context) {
    context.scale(ratio, ratio);
    miners.forEach((miner, index) => {
      const x = (index % columns) * (CELL + GAP);
      const y = Math.floor(index / columns) * (CELL + GAP);
      context.fillStyle = LEVEL_COLOUR[miner.riskLevel] ?? LEVEL_COLOUR[0];
      context.strokeStyle = "#222";
      context.lineWidth = 0.7;
      context.beginPath();
      switch (miner.riskLevel) {
        case RiskLevel.CRITICAL:
          context.rect(x, y, CELL, CELL);
          break;
        case RiskLevel.HIGH:
          context.moveTo(x + CELL / 2, y);
          context.lineTo(x + CELL, y + CELL / 2);
          context.lineTo(x + CELL / 2, y + CELL);
          context.lineTo(x, y + CELL / 2);
          context.closePath();
          break;
        case RiskLevel.MEDIUM:
          context.moveTo(x + CELL / 2, y + 1);
          context.lineTo(x + CELL, y + CELL);
          context.lineTo(x, y + CELL);
          context.closePath();
          break;
        case RiskLevel.LOW:
          context.arc(x + CELL / 2, y + CELL / 2, CELL / 2 - 1.5, 0, Math.PI * 2);
          break;
        default:
          context.rect(x + 2, y + CELL / 2 - 1, CELL - 4, 2);
      }
      context.fill();
      context.stroke();
    });
  }
  canvas.addEventListener("click", (event) => {
    const rect = canvas.getBoundingClientRect();
    const column = Math.floor((event.clientX - rect.left) / (CELL + GAP));
    const row = Math.floor((event.clientY - rect.top) / (CELL + GAP));
    const miner = miners[row * columns + column];
    if (miner && column < columns) location.hash = `#/miner/${encodeURIComponent(miner.id)}`;
  });
  canvas.addEventListener("mousemove", (event) => {
    const rect = canvas.getBoundingClientRect();
    const column = Math.floor((event.clientX - rect.left) / (CELL + GAP));
    const row = Math.floor((event.clientY - rect.top) / (CELL + GAP));
    const miner = miners[row * columns + column];
    canvas.title = miner ? `${miner.id}: ${LEVEL_NAME[miner.riskLevel]} ${percent(miner.riskScore)}` : "";
  });
  return canvas;
}
