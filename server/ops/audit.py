"""The audit log: who trained, cancelled, activated, wrote telemetry or failures, and when.

One JSON object per line, appended to a file (setting audit_log_file, default data_dir/audit.log)
and logged through the `server.audit` logger. The file is written by this object rather than by a
handler on the global logger, so two servers in one process (tests) never write each other's file.
"""

from __future__ import annotations

import json
import logging
import threading
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
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()
        log.info("%s", line)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
