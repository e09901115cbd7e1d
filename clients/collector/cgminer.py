"""A thin async client of the cgminer-family JSON API (TCP 4028): bmminer, cgminer, bosminer, btminer.

One command per connection: send `{"command": "summary"}`, read until the miner closes the
connection (or sends the NUL byte some firmwares end with), decode. Replies from real firmware are
not always valid JSON; `decode_reply` repairs the known breakages (trailing NUL, bmminer's missing
comma between objects `}{`, trailing commas, raw control characters) and rejects anything else
with `MalformedReply`, never a bare `JSONDecodeError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any, Final

DEFAULT_PORT: Final = 4028
# A full `stats` reply of a 3-board Antminer is ~10 KiB; anything near this is a broken miner.
MAX_REPLY_BYTES: Final = 4 * 1024 * 1024

# Control characters other than \t \n \r are invalid anywhere in JSON text (btminer emits some).
_CONTROL_CHARS: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# bmminer's `stats` lists objects without a comma: `[{...}{...}]`.
_MISSING_COMMA: Final = re.compile(r"}\s*{")
# Trailing and leading commas: `{"a":1,}`, `[,{...}]`.
_TRAILING_COMMA: Final = re.compile(r",\s*([}\]])")
_LEADING_COMMA: Final = re.compile(r"\[\s*,")


class MinerError(Exception):
    """A miner could not be read. `target` is "host:port"."""

    def __init__(self, target: str, message: str) -> None:
        super().__init__(f"{target}: {message}")
        self.target = target
        self.message = message


class MinerUnreachable(MinerError):
    """No reply: connection refused or reset, a timeout, or the miner hung up without answering."""


class MalformedReply(MinerError):
    """The miner answered with something that is not (repairable) JSON of the expected shape."""


class CommandFailed(MinerError):
    """The miner answered with an error status (e.g. "Invalid command" from a firmware without it)."""


def decode_reply(raw: bytes, target: str = "miner") -> dict[str, Any]:
    """Parses a reply, repairing the known firmware quirks; raises MalformedReply otherwise."""
    text = raw.rstrip(b"\x00 \t\r\n").decode("utf-8", errors="replace")
    if not text:
        raise MalformedReply(target, "empty reply")
    try:
        decoded = json.loads(text, strict=False)
    except json.JSONDecodeError:
        repaired = _CONTROL_CHARS.sub("", text)
        repaired = _MISSING_COMMA.sub("},{", repaired)
        repaired = _TRAILING_COMMA.sub(r"\1", repaired)
        repaired = _LEADING_COMMA.sub("[", repaired)
        try:
            decoded = json.loads(repaired, strict=False)
        except json.JSONDecodeError as exc:
            excerpt = text[max(0, exc.pos - 40) : exc.pos + 40]
            raise MalformedReply(
                target, f"invalid JSON at char {exc.pos} ({exc.msg}) near {excerpt!r}"
            ) from exc
    if not isinstance(decoded, dict):
        raise MalformedReply(target, f"expected a JSON object, got {type(decoded).__name__}")
    return decoded


def check_status(reply: dict[str, Any], command: str, target: str = "miner") -> None:
    """Raises CommandFailed when the reply's STATUS says error or fatal.

    cgminer and bosminer send `"STATUS": [{"STATUS": "S", ...}]`; btminer's errors put the fields
    at the top level: `{"STATUS": "E", "Msg": "invalid cmd"}`.
    """
    status = reply.get("STATUS")
    entry = status[0] if isinstance(status, list) and status and isinstance(status[0], dict) else reply
    code = entry.get("STATUS")
    if code in ("E", "F"):
        raise CommandFailed(target, f"{command}: {entry.get('Msg') or 'error status'}")


async def query(host: str, port: int, command: str, *, timeout: float) -> dict[str, Any]:
    """Sends one command and returns the decoded reply; the whole exchange is bounded by timeout."""
    target = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(json.dumps({"command": command}).encode())
                await writer.drain()
                raw = await _read_reply(reader, target)
            finally:
                writer.close()
                # A miner that resets the connection after replying still replied.
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except TimeoutError as exc:
        raise MinerUnreachable(target, f"{command}: no reply within {timeout:g} s") from exc
    except OSError as exc:
        raise MinerUnreachable(target, f"{command}: {exc.strerror or exc}") from exc
    if not raw:
        raise MinerUnreachable(target, f"{command}: connection closed without a reply")
    reply = decode_reply(raw, target)
    check_status(reply, command, target)
    return reply


async def _read_reply(reader: asyncio.StreamReader, target: str) -> bytes:
    """Reads until EOF or a NUL terminator."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise MalformedReply(target, f"reply longer than {MAX_REPLY_BYTES} bytes")
        if b"\x00" in chunk:
            break
    return b"".join(chunks)
