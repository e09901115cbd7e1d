"""A model swap retires the old version's batcher cleanly (issue 11, item 9).

Swaps under load used to drop the old batcher with its worker task still pending: the garbage
collector then logged "Task was destroyed but it is pending" (52 times in 85 activations). The old
batcher now finishes what was queued and its task ends.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import numpy as np
import pytest

from server.config import Settings
from server.domain.active_models import ActiveModels
from server.domain.scores import LatestScores
from server.domain.scoring import Scoring
from server.store import Store


def _double(batch: np.ndarray) -> np.ndarray:
    return batch * 2.0


def test_swapping_versions_under_load_leaves_no_pending_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(tmp_path / "fleet.duckdb")
    scoring = Scoring(store, ActiveModels(), LatestScores(), Settings(data_dir=tmp_path))

    async def load() -> list[float]:
        results: list[asyncio.Task[np.ndarray]] = []
        for version in range(40):  # 40 activations, each while requests are queued
            batcher = scoring.batchers.get(f"v{version}", _double)
            results += [asyncio.create_task(batcher.submit(np.full(3, float(i)))) for i in range(8)]
            await asyncio.sleep(0)  # the worker picks some up; others are still queued at the swap
        outputs = await asyncio.gather(*results)
        await asyncio.sleep(0.05)
        gc.collect()  # a dropped batcher's pending worker task is collected here (and logged)
        await asyncio.sleep(0)
        await scoring.close()
        return [float(o[0]) for o in outputs]

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        outputs = asyncio.run(load())
    store.close()
    assert outputs == [2.0 * i for _ in range(40) for i in range(8)]  # every queued request answered
    destroyed = [r for r in caplog.records if "Task was destroyed" in r.getMessage()]
    assert destroyed == []
    assert scoring.batchers.retiring == 0  # every old worker task has ended
