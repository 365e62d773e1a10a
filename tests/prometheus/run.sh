#!/usr/bin/env bash
# A real Prometheus (Debian's `prometheus` package, installed here if missing) scrapes
# `petrel standalone` started with `metricsExporterType=PROM`: after three sends through
# `petrel admin sendMessage`, Prometheus' own query API must answer
# rocketmq_messages_in_total{topic="PromTopic"} = 3 and a send-latency count of 3, and
# promtool must find the exposition well formed.
#
#   bash tests/prometheus/run.sh path/to/petrel
#
# Ends with a cargo-style "test result:" line so scripts/test.sh counts it.
set -euo pipefail
petrel="$(cd "$(dirname "${1:?usage: run.sh path/to/petrel}")" && pwd)/$(basename "$1")"

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "installing Debian's prometheus package"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

printf 'metricsExporterType=PROM\nmetricsPromExporterPort=0\n' >"$work/broker.conf"
"$petrel" standalone --data-dir "$work/data" --namesrv-port 0 --broker-port 0 \
  -c "$work/broker.conf" >"$work/out" 2>"$work/log" &
pids+=($!)
disown
for _ in $(seq 1 300); do
  grep -q "^Clients:" "$work/out" 2>/dev/null && break
  sleep 0.1
done
namesrv="$(sed -n 's/^NameServer: *//p' "$work/out")"
metrics="$(sed -n 's|^Metrics: *http://\([^/]*\)/metrics|\1|p' "$work/out")"
[ -n "$namesrv" ] && [ -n "$metrics" ] || { cat "$work/out" "$work/log"; echo "standalone did not start with metrics"; exit 1; }

for i in 1 2 3; do
  # The broker registers with the NameServer a moment after start: the first send may retry.
  for _ in $(seq 1 50); do
    "$petrel" admin sendMessage -n "$namesrv" -t PromTopic -p "prometheus $i" >/dev/null 2>&1 && break
    sleep 0.2
  done
done

curl -sf "http://$metrics/metrics" >"$work/scraped"
promtool check metrics <"$work/scraped"

prom_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$work/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: petrel
    static_configs:
      - targets: ["$metrics"]
CONF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
disown

query() {
  curl -sf --get "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}
in_total="" sends=""
for _ in $(seq 1 60); do
  in_total="$(query 'rocketmq_messages_in_total{topic="PromTopic"}' 2>/dev/null || true)"
  sends="$(query 'rocketmq_rpc_latency_count{request_code="send_message"}' 2>/dev/null || true)"
  [ "$in_total" = "3" ] && [ "$sends" = "3" ] && break
  sleep 0.5
done
if [ "$in_total" = "3" ] && [ "$sends" = "3" ]; then
  echo "PASS Prometheus scraped rocketmq_messages_in_total{topic=\"PromTopic\"} = 3 and 3 timed sends"
  echo "test result: ok. 1 passed; 0 failed"
else
  echo "FAIL Prometheus answered messages_in=$in_total sends=$sends"
  tail -20 "$work/prometheus.log"
  echo "test result: FAILED. 0 passed; 1 failed"
  exit 1
fi
