"""One stack (server + Envoy) for the fuzz suites, with no rate limit in the way, and request
strategies built from the proto descriptors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

from tests.harness import Stack, start_stack


@pytest.fixture(scope="package")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(
        Path(tmp_path_factory.mktemp("fuzz")), expensive_calls_burst=1_000_000, metrics_port=-1
    )
    yield stack
    stack.close()


# Real ids of the small demo fleet reach the deeper code paths; the rest is hostile.
NASTY_STRINGS = [
    "",
    " ",
    "192.168.1.100",
    "10.0.0.1",
    "../../etc/passwd",
    "..",
    "%2e%2e",
    "a" * 300,
    "\x00",
    "\u202e\ufeff",
    "LSTM",
    "lstm-0123456789ab",
    "v1",
    "site:site-a",
    "' OR 1=1 --",
    "Robert'); DROP TABLE samples;--",
    "🦄",
]
INT32 = st.one_of(st.integers(-3, 300), st.integers(-(2**31), 2**31 - 1))
INT64 = st.one_of(st.integers(-3, 1000), st.integers(-(2**63), 2**63 - 1))
UINT64 = st.one_of(st.integers(0, 1000), st.integers(0, 2**64 - 1))
DOUBLES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e3, 1e3))
SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: st.one_of(st.sampled_from(NASTY_STRINGS), st.text(max_size=40)),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=40),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: INT32,
    FieldDescriptor.TYPE_SINT32: INT32,
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_SINT64: INT64,
    FieldDescriptor.TYPE_UINT64: UINT64,
    FieldDescriptor.TYPE_DOUBLE: DOUBLES,
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    # proto3 enums are open: unknown numbers must be handled too.
    FieldDescriptor.TYPE_ENUM: st.integers(-3, 40),
}
TIMESTAMP_SECONDS = st.one_of(
    st.integers(1_600_000_000, 1_900_000_000),  # plausible
    st.integers(-(2**40), 2**40),  # far outside datetime's range
)


def messages(descriptor: Descriptor, miner_ids: list[str], depth: int = 0) -> st.SearchStrategy[dict]:
    """Field values for a message (a dict for the message's constructor)."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.fixed_dictionaries(
            {}, optional={"seconds": TIMESTAMP_SECONDS, "nanos": st.integers(-(2**31), 2**31 - 1)}
        )
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue  # maps only appear in responses
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 2:
                continue
            value: st.SearchStrategy[Any] = messages(field.message_type, miner_ids, depth + 1)
        elif field.name in ("miner_id", "miner_ids"):
            value = st.one_of(st.sampled_from(miner_ids), SCALARS[field.type])
        else:
            value = SCALARS[field.type]
        if field.is_repeated:
            value = st.lists(value, max_size=3)
        optional[field.name] = value
    return st.fixed_dictionaries({}, optional=optional)


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(NASTY_STRINGS),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
