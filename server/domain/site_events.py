"""Site events: conditions that hit a large share of a site at once, reported once per site.

The anomaly decision (anomaly_decision.decide_site) finds them in the scores of a site's miners;
`SiteEvents` keeps the latest view per site so that a metrics gauge or an alert can read the events
that are open now (`open_events()`), without scoring anything itself.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

# A site event's kind comes from the features that deviate most on the miners it hits.
_KIND_OF_FEATURE = {
    "temperature": "thermal",
    "temperature_trend": "thermal",
    "fan_speed": "thermal",
    "accepted_shares": "pool",
    "rejected_shares": "pool",
    "rejection_rate": "pool",
    "hashrate": "hashrate",
    "hashrate_stability": "hashrate",
    "efficiency": "hashrate",
    "power": "power",
    "power_efficiency_trend": "power",
}


def kind_of(top_features: Sequence[Sequence[str]]) -> str:
    """thermal, pool, hashrate or power: the kind of the most common first feature; "" without any."""
    firsts = Counter(_KIND_OF_FEATURE.get(f[0], "other") for f in top_features if f)
    return firsts.most_common(1)[0][0] if firsts else ""


@dataclass(frozen=True, slots=True)
class SiteEvent:
    """One site event as the API reports it."""

    site: str
    kind: str
    start: datetime
    end: datetime
    open: bool
    miners_affected: int
    miners_reporting: int
    miner_ids: tuple[str, ...]


class SiteEvents:
    """The latest site events known per site (thread-safe; updated by every site decision)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_site: dict[str, tuple[SiteEvent, ...]] = {}
        self.on_change: Callable[[str, str, bool], None] | None = None
        """Told (site, kind, open) for each kind open before or after an update (the gauge)."""

    def update(self, site: str, events: Sequence[SiteEvent]) -> None:
        """Replace what is known about `site` with the events of its latest decision."""
        if not site:
            return
        with self._lock:
            before = {e.kind for e in self._by_site.get(site, ()) if e.open}
            self._by_site[site] = tuple(events)
        after = {e.kind for e in events if e.open}
        if self.on_change is not None:
            for kind in sorted(before | after):
                self.on_change(site, kind, kind in after)

    def open_events(self) -> list[SiteEvent]:
        """Events still open at their site's last decision, by site then kind (for a gauge
        `mfh_site_event_active{site,kind}`)."""
        with self._lock:
            return sorted(
                (e for events in self._by_site.values() for e in events if e.open),
                key=lambda e: (e.site, e.kind),
            )

    def for_site(self, site: str) -> tuple[SiteEvent, ...]:
        with self._lock:
            return self._by_site.get(site, ())


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)
