#!/usr/bin/env bash
# Installs PostgreSQL (Debian package postgresql) when initdb is missing, and makes sure the
# unprivileged user `postgres` exists: initdb and pg_ctl refuse to run as root, so as root the test
# fixture and `make run-postgres` (server/ops/pg_local.py) run the server as that user. Idempotent;
# CI runs it as root on a fresh machine. Nothing is started here.
set -euo pipefail

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && [ -z "${MFH_PG_BIN:-}" ]; then
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine has no package lists yet: update when the install cannot find the package.
  $sudo apt-get install -y --no-install-recommends postgresql \
    || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends postgresql; }
fi

# Debian's package creates the user; a machine where it was removed (or MFH_PG_BIN points at another
# build) gets a system user without a login shell or home.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
fi
