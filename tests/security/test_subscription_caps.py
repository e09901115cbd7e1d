"""One token cannot hold every subscription slot (issue 11, item 6): a cap per token and in total."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from mining.analytics.v1alpha1 import scoring_pb2, scoring_pb2_grpc

from tests.harness import ServerThread, error_details, start_server
from tests.security.conftest import write_tokens


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[tuple[ServerThread, dict[str, str]]]:
    tokens_file = tmp_path / "tokens.json"
    tokens = write_tokens(tokens_file, {"greedy": (["reader"], []), "other": (["reader"], [])})
    server = start_server(
        tmp_path, auth_tokens_file=tokens_file, max_subscriptions=10, max_subscriptions_per_token=2
    )
    yield server, tokens
    server.stop()


def _open(stub: scoring_pb2_grpc.ScoringServiceStub, token: str) -> tuple[grpc.Future, threading.Event]:
    """A subscription whose first event (a heartbeat) has arrived: it holds a slot."""
    stream = stub.SubscribeScores(
        scoring_pb2.SubscribeScoresRequest(heartbeat_seconds=1),
        metadata=(("authorization", f"Bearer {token}"),),
        timeout=60,
    )
    started = threading.Event()

    def read() -> None:
        try:
            for _ in stream:
                started.set()
        except grpc.RpcError:
            started.set()

    threading.Thread(target=read, daemon=True).start()
    return stream, started


def test_a_token_gets_at_most_its_share_of_subscriptions(capped: tuple[ServerThread, dict[str, str]]) -> None:
    server, tokens = capped
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        held = [_open(stub, tokens["greedy"]) for _ in range(2)]
        for _, started in held:
            assert started.wait(30)
        refused = stub.SubscribeScores(
            scoring_pb2.SubscribeScoresRequest(heartbeat_seconds=1),
            metadata=(("authorization", f"Bearer {tokens['greedy']}"),),
            timeout=30,
        )
        with pytest.raises(grpc.RpcError) as caught:
            next(iter(refused))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "per token" in caught.value.details()
        assert error_details(caught.value)[0] == "TOO_MANY_SUBSCRIPTIONS_FOR_TOKEN"
        # Another token still gets a slot.
        other, started = _open(stub, tokens["other"])
        assert started.wait(30)
        assert other.is_active()  # type: ignore[attr-defined]
        for stream, _ in [*held, (other, started)]:
            stream.cancel()
