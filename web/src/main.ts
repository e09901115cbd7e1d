// The console's entry: sign in, start the live score stream, and route between the pages
// (#/fleet, #/miner/<id>, #/models; hash routes, so Envoy serves one page for all of them).
import { Code } from "@connectrpc/connect";
import { code, sentence } from "./api.js";
import { h } from "./dom.js";
import { renderFleet } from "./fleet.js";
import { LiveScores, type LiveState } from "./live.js";
import { renderMiner } from "./miner.js";
import { renderModels } from "./models.js";
import { describe, signIn, signOut } from "./session.js";
import { store } from "./store.js";

const main = document.getElementById("main") as HTMLElement;
const liveBadge = document.getElementById("live") as HTMLElement;
const who = document.getElementById("who") as HTMLElement;
const banner = document.getElementById("banner") as HTMLElement;

const LIVE_TEXT: Record<LiveState, string> = {
  connecting: "◌ Connecting…",
  live: "● Live",
  reconnecting: "◌ Reconnecting…",
  stopped: "■ Not live",
};

function showLive(state: LiveState): void {
  liveBadge.textContent = LIVE_TEXT[state];
  liveBadge.dataset.state = state;
}

let leave: (() => void) | null = null;

function route(): void {
  leave?.();
  const hash = location.hash || "#/fleet";
  const minerMatch = /^#\/miner\/(.+)$/.exec(hash);
  const page = minerMatch ? "miner" : hash === "#/models" ? "models" : "fleet";
  for (const link of document.querySelectorAll<HTMLAnchorElement>("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (minerMatch) {
    const minerId = decodeURIComponent(minerMatch[1]);
    document.title = `Miner ${minerId} · Mining fleet health`;
    leave = renderMiner(main, minerId);
  } else if (page === "models") {
    document.title = "Models · Mining fleet health";
    leave = renderModels(main);
  } else {
    document.title = "Fleet · Mining fleet health";
    leave = renderFleet(main);
  }
}

// The skip link moves focus to the page, not to "#main": the hash is the router's.
document.querySelector(".skip")?.addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

async function start(): Promise<void> {
  let current;
  try {
    current = await signIn(main);
  } catch (error) {
    main.replaceChildren(
      h("h1", {}, "Mining fleet health"),
      h("p", { class: "problem", role: "alert" }, sentence(error, "Connecting to the server")),
      code(error) === Code.PermissionDenied ? h("button", { type: "button", onclick: signOut }, "Use another token") : "",
    );
    return;
  }
  who.replaceChildren(
    describe(current),
    current.authOn ? h("button", { type: "button", class: "link", onclick: signOut }, "Sign out") : "",
  );
  const live = new LiveScores({
    update: (score) => store.apply(score),
    gap: (count) => {
      banner.hidden = false;
      banner.textContent = `${count} live updates were missed while disconnected; the fleet was reloaded.`;
      void store.load(true);
    },
    state: (state, detail) => {
      showLive(state);
      if (state === "stopped" && detail) {
        banner.hidden = false;
        banner.textContent = "Live updates stopped: the server no longer accepts this token. Sign in again.";
      }
    },
  });
  live.start();
  window.addEventListener("hashchange", () => {
    route();
    main.focus({ preventScroll: true });
  });
  route();
}

void start();
