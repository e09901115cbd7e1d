"""VersionBatchers: one dynamic batcher per served model version; a new version retires the old."""

from __future__ import annotations

import asyncio

import numpy as np

from server.domain.batcher import VersionBatchers


def _plus(offset: float):  # type: ignore[no-untyped-def]
    return lambda batch: batch[:, 0] + offset


def test_a_version_keeps_its_batcher_and_a_new_version_retires_the_old() -> None:
    sizes: list[int] = []

    async def run() -> tuple[list[float], list[str], int]:
        batchers = VersionBatchers(max_batch=16, max_delay_s=0.01)
        batchers.on_batch = sizes.append  # set after construction, as the app does
        v1 = batchers.get("v1", _plus(100.0))
        assert batchers.get("v1", _plus(-1.0)) is v1  # the same version: the same batcher
        queued = [asyncio.create_task(v1.submit(np.array([float(i)]))) for i in range(4)]
        await asyncio.sleep(0)
        v2 = batchers.get("v2", _plus(200.0))
        newer = await v2.submit(np.array([1.0]))
        answered = [float(x) for x in await asyncio.gather(*queued)] + [float(newer)]
        versions = batchers.versions
        await batchers.close()
        return answered, versions, batchers.retiring

    answered, versions, retiring = asyncio.run(run())
    assert answered == [100.0, 101.0, 102.0, 103.0, 201.0]  # v1's queue answered by v1 after the swap
    assert versions == ["v2"] and retiring == 0
    assert sum(sizes) == 5
