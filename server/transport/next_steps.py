"""Renders the domain's next-step pointers (server.errors.next_step) for the caller's surface.

A message says what to do next without naming a surface: "<<FleetService.ListMiners>>". A REST
caller (Envoy's transcoder marks the call with x-envoy-original-path) reads the route from the
method's google.api.http rule, "GET /api/advanced/miners"; a gRPC caller reads the method,
"FleetService.ListMiners"; the ErrorInfo also carries it as metadata "next_step", for a client
such as the CLI to name its own command.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from google.api import annotations_pb2
from mining.analytics.v1alpha1 import fleet_pb2, history_pb2, scoring_pb2, telemetry_pb2, training_pb2

_MARK = re.compile(r"<<(\w+)\.(\w+)(?:\?([^>]*))?>>")
_FILES = (fleet_pb2, history_pb2, scoring_pb2, telemetry_pb2, training_pb2)


def is_rest(metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """Whether the call came through Envoy's REST transcoder."""
    return any(key == "x-envoy-original-path" for key, _ in metadata or ())


def first(text: str) -> str:
    """The first next step of a text as "Service.Method" (ErrorInfo metadata "next_step", which
    clients such as the CLI map to their own command), or "" when it has none."""
    match = _MARK.search(text)
    return f"{match.group(1)}.{match.group(2)}" if match else ""


def render(text: str, *, rest: bool) -> str:
    """The text with each next-step pointer as a REST route (rest) or a gRPC method name."""
    return _MARK.sub(lambda match: _one(match, rest), text)


def _one(match: re.Match[str], rest: bool) -> str:
    service, method, query = match.group(1), match.group(2), match.group(3) or ""
    params = dict(pair.split("=", 1) for pair in query.split("&") if "=" in pair)
    route = _route(service, method) if rest else None
    if route is None:
        return f"{service}.{method}"
    verb, template = route
    return f"{verb} {re.sub(r'{([^}=]+)(=[^}]*)?}', lambda v: params.get(v.group(1), v.group(0)), template)}"


@functools.cache
def _route(service: str, method: str) -> tuple[str, str] | None:
    """(HTTP verb, path template) of a method's google.api.http rule, or None when it has none."""
    for module in _FILES:
        described = module.DESCRIPTOR.services_by_name.get(service)
        if described is None or method not in described.methods_by_name:
            continue
        rule = described.methods_by_name[method].GetOptions().Extensions[annotations_pb2.http]
        pattern = rule.WhichOneof("pattern")
        if pattern in ("get", "put", "post", "delete", "patch"):
            return pattern.upper(), getattr(rule, pattern)
    return None
