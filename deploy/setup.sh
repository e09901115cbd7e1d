#!/usr/bin/env bash
# Installs what the deployment tests and `make monitoring` run when it is missing: Prometheus and
# Alertmanager (Debian packages prometheus, prometheus-alertmanager) and systemd-analyze (package
# systemd, to verify the service unit). Idempotent; CI runs it as root on a fresh machine.
set -euo pipefail

packages=()
for binary in prometheus promtool; do
  command -v "$binary" >/dev/null 2>&1 || packages+=(prometheus)
done
for binary in prometheus-alertmanager amtool; do
  command -v "$binary" >/dev/null 2>&1 || packages+=(prometheus-alertmanager)
done
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
[ "${#packages[@]}" = 0 ] && exit 0

mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet: update when the install cannot find the packages.
$sudo apt-get install -y --no-install-recommends "${packages[@]}" \
  || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${packages[@]}"; }
