"""REST through Envoy with generated paths, query parameters and JSON bodies: every answer is a
4xx with a JSON google.rpc.Status body (or a 2xx); never 5xx, never a hang."""

from __future__ import annotations

import json
import urllib.parse

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import JSON_VALUES, NASTY_STRINGS
from tests.harness import Stack

SEGMENT = st.one_of(st.sampled_from(NASTY_STRINGS), st.text(min_size=1, max_size=30))
QUERY_NAMES = st.sampled_from(
    [
        "page_size",
        "page_token",
        "min_risk_level",
        "site",
        "explain",
        "start",
        "end",
        "top_k",
        "step",
        "miner_ids",
        "model_kind",
        "hardware_model",
        "heartbeat_seconds",
        "after_sequence",
        "bogus",
        "miner_id",
    ]
)
QUERY_VALUES = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.text(max_size=20),
    st.integers(-(2**65), 2**65).map(str),
    st.sampled_from(["true", "false", "HIGH", "nan", "1e999", "2026-01-01T00:00:00Z", "-1"]),
)

# (method, path template): {} is replaced by a generated segment.
GET_ROUTES = [
    "/api/advanced/status",
    "/api/advanced/miners",
    "/api/advanced/miners/{}",
    "/api/advanced/predict/failure-risk/{}",
    "/api/advanced/detect/anomalies/{}",
    "/api/advanced/fleet/scores",
    "/api/advanced/failures",
    "/api/advanced/train/jobs",
    "/api/advanced/train/jobs/{}",
    "/api/advanced/models",
    "/api/advanced/miners/{}/telemetry",
    "/api/advanced/miners/{}/risk-history",
    "/api/advanced/miners/{}/events",
    "/api/advanced/{}",
    "/{}",
]
BODY_ROUTES = [
    ("POST", "/api/advanced/metrics", ["samples", "columns", "batch_id"]),
    ("POST", "/api/advanced/failures", ["miner_id", "occurred_at", "mode", "repaired_at", "note"]),
    ("POST", "/api/advanced/failures/{}/repair", ["event_id", "repaired_at", "note"]),
    ("POST", "/api/advanced/planned-states", ["miner_id", "kind", "start", "end", "note"]),
    ("POST", "/api/advanced/feedback", ["miner_id", "verdict", "model_version", "note"]),
    ("POST", "/api/advanced/train/jobs/{}/cancel", ["job_id"]),
    ("POST", "/api/advanced/models/{}/v1/activate", ["model_kind", "version"]),
    ("PUT", "/api/advanced/miners/{}", ["miner_id", "hardware_model", "nominal_hashrate_ths", "site"]),
    # Train with a kind that is never valid, so no real job starts (a valid one would train).
    ("POST", "/api/advanced/train/{}", ["epochs", "batch_size", "validation_split", "seed"]),
]
FUZZ = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _check(reply_status: int, body: bytes, where: str) -> None:
    assert reply_status < 500, f"{reply_status} for {where}: {body[:300]!r}"
    if reply_status >= 400:
        document = json.loads(body)
        assert isinstance(document["code"], int) and document["code"] != 0, where
        assert document["message"], where


def _path(template: str, segment: str) -> str:
    return template.replace("{}", urllib.parse.quote(segment, safe=""))


@pytest.mark.parametrize("template", GET_ROUTES)
def test_get_routes_answer_generated_paths_and_queries_cleanly(fuzz_stack: Stack, template: str) -> None:
    @FUZZ
    @given(segment=SEGMENT, query=st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=3))
    def check(segment: str, query: list[tuple[str, str]]) -> None:
        path = _path(template, segment)
        if query:
            path += "?" + urllib.parse.urlencode(query)
        reply = fuzz_stack.rest("GET", path, timeout=30)
        _check(reply.status, reply.body, f"GET {path}")

    check()


@pytest.mark.parametrize(("method", "template", "fields"), BODY_ROUTES, ids=[r[1] for r in BODY_ROUTES])
def test_body_routes_answer_generated_json_cleanly(
    fuzz_stack: Stack, method: str, template: str, fields: list[str]
) -> None:
    keys = st.one_of(st.sampled_from(fields), st.text(max_size=10))
    bodies = st.one_of(
        st.dictionaries(keys, JSON_VALUES, max_size=4),
        JSON_VALUES,
        st.binary(max_size=30).map(lambda b: b.decode("latin-1")),
    )

    @FUZZ
    @given(segment=SEGMENT, body=bodies, raw=st.booleans())
    def check(segment: str, body: object, raw: bool) -> None:
        if "/train/{}" in template:
            assume(segment.strip().lower() not in ("lstm", "autoencoder", "1", "2"))
            assume(not segment.strip().isdigit())
        path = _path(template, segment)
        payload = body.encode("utf-8", "surrogatepass") if raw and isinstance(body, str) else None
        if payload is not None:
            reply = fuzz_stack.rest(method, path, raw=payload, timeout=30)
        else:
            reply = fuzz_stack.rest(method, path, body, timeout=30)
        _check(reply.status, reply.body, f"{method} {path} {body!r:.200}")

    check()
