#!/usr/bin/env bash
# Installs Prometheus and Alertmanager (Debian packages) when they are missing: the alert tests and
# `make monitoring` run the real binaries. Idempotent; CI runs it as root on a fresh machine.
set -euo pipefail

needed=(prometheus promtool prometheus-alertmanager amtool)
missing=0
for binary in "${needed[@]}"; do
  command -v "$binary" >/dev/null 2>&1 || missing=1
done
[ "$missing" = 0 ] && exit 0

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
packages=(prometheus prometheus-alertmanager)
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet: update only when the install cannot find the packages.
$sudo apt-get install -y --no-install-recommends "${packages[@]}" \
  || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${packages[@]}"; }
