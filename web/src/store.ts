// The fleet as the console knows it: every miner with its latest score, loaded page by page with
// ListMiners and kept current by the live stream. Pages subscribe to changes.
import { RiskLevel } from "../gen/mining/analytics/v1alpha1/common_pb.js";
import type { MinerScore } from "../gen/mining/analytics/v1alpha1/scoring_pb.js";
import { fleet as fleetApi } from "./api.js";
import { toDate } from "./format.js";

export interface MinerRow {
  id: string;
  hardwareModel: string;
  site: string;
  serial: string;
  mac: string;
  lastSeen: Date | null;
  riskScore: number;
  riskLevel: RiskLevel;
  isAnomaly: boolean;
  /** performance.now() of the last live update, for the highlight. */
  updatedAt: number;
}

const PAGE_SIZE = 1000;

class FleetStore {
  rows = new Map<string, MinerRow>();
  /** Some rows are in (the riskiest come first: ListMiners pages are ordered by risk). */
  loaded = false;
  /** Every page of the last load is in. */
  complete = false;
  /** Miners in the fleet as the last page said. */
  total = 0;
  private listeners = new Set<(changed: string[] | null) => void>();
  private loading: Promise<void> | null = null;
  private reloadAfter = false;
  /** Live updates that arrived during a load, re-applied once it is in. */
  private during = new Map<string, MinerScore>();

  load(force = false): Promise<void> {
    if (this.loading) {
      this.reloadAfter ||= force;
      return this.loading;
    }
    if (this.complete && !force) return Promise.resolve();
    this.loading = this.fetchAll().finally(() => {
      this.loading = null;
      if (this.reloadAfter) {
        this.reloadAfter = false;
        void this.load(true);
      }
    });
    return this.loading;
  }

  private async fetchAll(): Promise<void> {
    // The first load shows each page as it arrives; a reload swaps the fleet in when complete.
    const progressive = !this.loaded;
    const rows = progressive ? this.rows : new Map<string, MinerRow>();
    let pageToken = "";
    do {
      const page = await fleetApi.listMiners({ pageSize: PAGE_SIZE, pageToken });
      this.total = page.total;
      for (const miner of page.miners) {
        rows.set(miner.minerId, {
          id: miner.minerId,
          hardwareModel: miner.hardwareModel,
          site: miner.site,
          serial: miner.serial,
          mac: miner.mac,
          lastSeen: toDate(miner.lastSeen),
          riskScore: miner.riskScore,
          riskLevel: miner.riskLevel,
          isAnomaly: miner.isAnomaly,
          updatedAt: this.rows.get(miner.minerId)?.updatedAt ?? 0,
        });
      }
      pageToken = page.nextPageToken;
      if (progressive && pageToken) {
        this.loaded = true;
        this.emit(null);
      }
    } while (pageToken);
    this.rows = rows;
    this.loaded = true;
    this.complete = true;
    const during = [...this.during.values()];
    this.during.clear();
    for (const score of during) this.apply(score);
    this.emit(null);
  }

  /** Applies one live score; a miner registered after the load triggers a reload. */
  apply(score: MinerScore): void {
    if (this.loading) this.during.set(score.minerId, score);
    const row = this.rows.get(score.minerId);
    if (!row) {
      if (!this.loading) {
        this.during.set(score.minerId, score);
        void this.load(true);
      }
      return;
    }
    row.riskScore = score.riskScore;
    row.riskLevel = score.riskLevel;
    row.isAnomaly = score.isAnomaly;
    const end = toDate(score.windowEnd);
    if (end && (!row.lastSeen || end > row.lastSeen)) row.lastSeen = end;
    row.updatedAt = performance.now();
    this.emit([score.minerId]);
  }

  subscribe(listener: (changed: string[] | null) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(changed: string[] | null): void {
    for (const listener of this.listeners) listener(changed);
  }
}

export const store = new FleetStore();

/** Riskiest first; unscored miners last; ties by id so the order is stable. */
export function byRisk(a: MinerRow, b: MinerRow): number {
  const ra = a.riskLevel === RiskLevel.RISK_LEVEL_UNSPECIFIED ? -1 : a.riskScore;
  const rb = b.riskLevel === RiskLevel.RISK_LEVEL_UNSPECIFIED ? -1 : b.riskScore;
  return rb - ra || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
