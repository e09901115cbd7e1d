"""`python -m clients.cli`: the same as the `mining-health` command."""

from __future__ import annotations

import sys

from clients.cli.app import main

sys.exit(main())
