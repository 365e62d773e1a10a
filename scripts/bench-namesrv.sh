#!/usr/bin/env bash
# Measures `petrel namesrv` under GET_ROUTEINFO_BY_TOPIC load from 16 connections over loopback,
# and its resident memory at the end of the run. Release build; prints one line of figures.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${PORT:-19876}"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/petrel"
RUST_LOG=warn "$bin" namesrv --listen-port "$port" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
sleep 1
"$bin" bench route -n "127.0.0.1:$port" --register -c "${CONNECTIONS:-16}" --duration "${DURATION:-10}"
echo "namesrv resident memory: $(awk '/VmRSS/ {print $2, $3}' "/proc/$pid/status")"
