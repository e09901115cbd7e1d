"""Rescoring the whole fleet whenever a model becomes active, proven through the API.

The defect this fixes: after training the LSTM through the API, ListMiners showed risk only for the
miners someone had asked about (the fleet was scored only at start-up).
"""

from __future__ import annotations

from tests.harness import Stack
from tests.history.conftest import all_miners, eventually, scrape, train


def test_training_the_lstm_scores_every_miner_without_anyone_asking(fresh_stack: Stack) -> None:
    stack = fresh_stack
    before = all_miners(stack)
    assert before and all(m["risk_level"] == "RISK_LEVEL_UNSPECIFIED" for m in before)

    job = train(stack, "lstm", seed=3)
    assert job["promoted"] is True, job

    def fleet_scored() -> list[dict[str, object]] | None:
        miners = all_miners(stack)
        return miners if all(m["risk_level"] != "RISK_LEVEL_UNSPECIFIED" for m in miners) else None

    miners = eventually(fleet_scored, timeout=60, what="every miner scored after the promotion")
    assert len(miners) == len(before)
    risks = [float(m["risk_score"]) for m in miners]  # type: ignore[arg-type]
    assert risks == sorted(risks, reverse=True)  # the ranking follows the new scores
    metrics = scrape(stack)
    by_level = {
        labels[0][1]: value for (name, labels), value in metrics.items() if name == "mfh_miners_by_risk_level"
    }
    assert sum(by_level.values()) == len(miners), by_level
