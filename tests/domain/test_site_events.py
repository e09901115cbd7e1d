"""SiteEvents: the latest site events per site, and the open ones a gauge reads."""

from __future__ import annotations

from datetime import UTC, datetime

from server.domain.site_events import SiteEvent, SiteEvents, kind_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(site: str, kind: str, is_open: bool) -> SiteEvent:
    return SiteEvent(site, kind, T0, T0, is_open, 8, 10, ("a", "b"))


def test_open_events_are_the_latest_decision_of_each_site() -> None:
    events = SiteEvents()
    events.update("row-2", [_event("row-2", "thermal", True)])
    events.update("row-1", [_event("row-1", "pool", False), _event("row-1", "thermal", True)])
    assert [(e.site, e.kind) for e in events.open_events()] == [("row-1", "thermal"), ("row-2", "thermal")]
    events.update("row-2", [_event("row-2", "thermal", False)])  # the heat wave ended
    assert [(e.site, e.kind) for e in events.open_events()] == [("row-1", "thermal")]
    events.update("", [_event("", "pool", True)])  # miners without a site have no site events
    assert len(events.open_events()) == 1 and len(events.for_site("row-1")) == 2


def test_the_kind_comes_from_the_features_that_deviate_most() -> None:
    assert kind_of([["temperature", "fan_speed"], ["fan_speed"], ["rejection_rate"]]) == "thermal"
    assert kind_of([["rejected_shares"], ["accepted_shares"], ["hashrate"]]) == "pool"
    assert kind_of([]) == ""
