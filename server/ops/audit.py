"""The audit log: who trained, cancelled, activated, wrote telemetry or failures, and when.

One JSON object per line, appended to a file (setting audit_log_file, default data_dir/audit.log)
and logged through the `server.audit` logger. The file is written by this object rather than by a
handler on the global logger, so two servers in one process (tests) never write each other's file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("server.audit")


class AuditLog:
    """Appends audit entries; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def record(self, action: str, *, who: str, outcome: str = "OK", **fields: Any) -> None:
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "action": action,
            "who": who,
            "outcome": outcome,
            **fields,
        }
        line = json.dumps(entry, default=str)
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Private: 0600 from creation on (os.open applies the mode atomically).
                descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                os.chmod(self.path, 0o600)
                self._file = os.fdopen(descriptor, "a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()
        log.info("%s", line)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class RefusalLog:
    """Refused calls (bad or missing token, missing role, rate limit), logged and audited at most once
    per client and outcome per `window_s`, each line with the number of such calls suppressed since
    the previous one; every refusal is still counted (`on_refused`, e.g. a metrics counter)."""

    MAX_CLIENTS = 10_000  # past this many tracked clients, windows that ended are forgotten

    def __init__(
        self,
        audit: AuditLog | None,
        *,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_refused: Callable[[str, str], None] = lambda method, outcome: None,
    ) -> None:
        self._audit = audit
        self._window_s = window_s
        self._clock = clock
        self._on_refused = on_refused
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], list[float]] = {}  # (client, outcome) -> [start, suppressed]

    def refused(self, method: str, address: str, outcome: str, who: str = "") -> None:
        self._on_refused(method, outcome)
        client = who or address
        now = self._clock()
        with self._lock:
            window = self._windows.get((client, outcome))
            if window is not None and now - window[0] < self._window_s:
                window[1] += 1
                return
            suppressed = int(window[1]) if window is not None else 0
            self._windows[(client, outcome)] = [now, 0]
            if len(self._windows) > self.MAX_CLIENTS:
                self._windows = {k: w for k, w in self._windows.items() if now - w[0] < self._window_s}
        log.warning(
            "%s refused for %s (%s): %s; %d more refused since the last line (at most one line a minute "
            "per client)",
            method,
            who or "?",
            address,
            outcome,
            suppressed,
        )
        if self._audit is not None:
            self._audit.record(
                "call", who=client, outcome=outcome, method=method, peer=address, suppressed=suppressed
            )
