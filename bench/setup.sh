#!/usr/bin/env bash
# Installs the load generators the benchmark drives (Debian packages): h2load (nghttp2-client) for
# gRPC-free HTTP/2 and HTTP/1.1 load with a fixed rate, wrk for HTTP/1.1 saturation. Idempotent.
set -euo pipefail
missing=()
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v wrk >/dev/null || missing+=(wrk)
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
h2load --version | head -1
wrk --version 2>&1 | head -1 || true
