"""`mining-health`: the command line of the mining-fleet health server.

One module per command (its flags, its handler and its rendering together); `app` assembles the
parser and runs a command, `connection` holds the flags every command shares (server, TLS, token),
`output` prints tables and colour for people or JSON for programs, `reader` reads telemetry files.

Exit codes: 0 ok (also when the reader of our output went away, e.g. `| head -1`), 1 the server
answered an error (code, reason and message are printed), 2 usage (bad flags, unreadable input
file), 130 interrupted.
"""

from __future__ import annotations

from clients.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
