"""Logging set-up: plain `time level logger message` lines, or one JSON object per line.

With JSON logs every line on stderr must parse, but not everything in the process logs through
Python: gRPC core (C++) writes glog lines such as `I1129 12:00:00.123456  42 chttp2_transport.cc:1]
...` straight to file descriptor 2, and an uncaught exception prints its traceback there. JSON mode
therefore routes descriptor 2 through a pipe: a reader thread turns each line that is not already a
JSON object into a log record (gRPC core's under the logger `grpc.core` at its own level, anything
else under `stderr` at ERROR), and the handler writes to the real stderr.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Final

# glog's prefix: severity letter, MMDD HH:MM:SS.micros, thread id, file:line] message
GLOG_LINE: Final = re.compile(r"^([IWEF])\d{4} \d{2}:\d{2}:\d{2}\.\d+\s+\d+\s+(\S+:\d+)\]\s?(.*)$")
GLOG_LEVELS: Final = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        source = getattr(record, "source", None)
        if source:
            entry["source"] = source
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def stderr_record(line: str) -> logging.LogRecord | None:
    """A log record for one raw stderr line; None for a line that already is a JSON object."""
    text = line.rstrip("\r\n")
    if text.startswith("{"):
        try:
            if isinstance(json.loads(text), dict):
                return None
        except ValueError:
            pass
    match = GLOG_LINE.match(text)
    if match:
        severity, source, message = match.groups()
        record = logging.LogRecord("grpc.core", GLOG_LEVELS[severity], source, 0, message, None, None)
        record.source = source
        return record
    return logging.LogRecord("stderr", logging.ERROR, "", 0, text, None, None)


class StderrCapture:
    """Descriptor 2 becomes a pipe; each line written to it is logged through `handler` as JSON."""

    def __init__(self, handler: logging.Handler, real_stderr: IO[str]) -> None:
        self.handler = handler
        self.real_stderr = real_stderr
        self._saved_fd = os.dup(2)
        read_fd, write_fd = os.pipe()
        sys.stderr.flush()
        os.dup2(write_fd, 2)  # fd 2 is inheritable: child processes' stderr lands here too
        os.close(write_fd)
        self._lines = os.fdopen(read_fd, "r", encoding="utf-8", errors="replace")
        self._thread = threading.Thread(target=self._pump, name="stderr-to-json", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _pump(self) -> None:
        for line in self._lines:
            if not line.strip():
                continue
            record = stderr_record(line)
            if record is None:  # already JSON (e.g. from a training worker): pass it through as is
                self.handler.acquire()
                try:
                    self.real_stderr.write(line if line.endswith("\n") else line + "\n")
                    self.real_stderr.flush()
                finally:
                    self.handler.release()
            elif record.levelno >= logging.getLogger(record.name).getEffectiveLevel():
                self.handler.handle(record)

    def close(self) -> None:
        """Restores descriptor 2 and writes out what the pipe still holds."""
        if self._saved_fd < 0:
            return
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(self._saved_fd, 2)  # closes our write end; the reader sees EOF once children close theirs
        os.close(self._saved_fd)
        self._saved_fd = -1
        self._thread.join(timeout=2)


_capture: StderrCapture | None = None


def configure(level: str = "INFO", *, as_json: bool = False) -> None:
    global _capture
    root = logging.getLogger()
    if as_json:
        if _capture is None:
            # The handler writes to a copy of the real stderr, not to descriptor 2 (the pipe).
            real_stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8")
            handler: logging.Handler = logging.StreamHandler(real_stderr)
            handler.setFormatter(JsonFormatter())
            _capture = StderrCapture(handler, real_stderr)
        handler = _capture.handler
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
