// Live scores from the SubscribeScores server stream (gRPC-web through Envoy), resumed after a
// dropped connection from the last sequence number seen, so no update is lost while reconnecting
// (the server replays what it still keeps and says how many it no longer has).
import { Code } from "@connectrpc/connect";
import type { MinerScore } from "../gen/mining/analytics/v1alpha1/scoring_pb.js";
import { code, scoring } from "./api.js";

export type LiveState = "connecting" | "live" | "reconnecting" | "stopped";

export interface LiveHandlers {
  update(score: MinerScore): void;
  /** Updates were lost (the client was too slow, or away longer than the replay log): reload. */
  gap(count: number): void;
  state(state: LiveState, detail: string): void;
}

const HEARTBEAT_SECONDS = 5;
const MAX_BACKOFF_MS = 10_000;
/** No message (not even a heartbeat) for this long: the connection is dead though not closed. */
const SILENCE_MS = 3 * HEARTBEAT_SECONDS * 1000;

export class LiveScores {
  private sequence = 0n;
  private abort: AbortController | null = null;
  private running = false;

  constructor(private readonly handlers: LiveHandlers) {}

  get lastSequence(): bigint {
    return this.sequence;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  stop(): void {
    this.running = false;
    this.abort?.abort();
    this.handlers.state("stopped", "");
  }

  private async loop(): Promise<void> {
    let backoff = 500;
    let first = true;
    while (this.running) {
      this.handlers.state(first ? "connecting" : "reconnecting", "");
      const abort = new AbortController();
      this.abort = abort;
      let watchdog = setTimeout(() => abort.abort(), SILENCE_MS);
      try {
        const stream = scoring.subscribeScores(
          { afterSequence: this.sequence, heartbeatSeconds: HEARTBEAT_SECONDS },
          { signal: this.abort.signal },
        );
        for await (const event of stream) {
          clearTimeout(watchdog);
          watchdog = setTimeout(() => abort.abort(), SILENCE_MS);
          if (event.sequence > this.sequence) this.sequence = event.sequence;
          this.handlers.state("live", "");
          backoff = 500;
          first = false;
          switch (event.event.case) {
            case "update":
              this.handlers.update(event.event.value);
              break;
            case "dropped":
              this.handlers.gap(event.event.value.count);
              break;
            case "error":
              // The server ends streams in-band before it stops: reconnect like after a drop.
              throw new Error(event.event.value.message);
            default:
              break;
          }
        }
      } catch (error) {
        clearTimeout(watchdog);
        if (!this.running) return;
        const denied = code(error) === Code.Unauthenticated || code(error) === Code.PermissionDenied;
        if (denied) {
          this.running = false;
          this.handlers.state("stopped", String(error));
          return;
        }
      }
      clearTimeout(watchdog);
      if (!this.running) return;
      first = false;
      this.handlers.state("reconnecting", "");
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
}
