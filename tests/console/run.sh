#!/usr/bin/env bash
# `petrel console` in headless Chromium (Debian's chromium and chromium-driver, installed here
# if missing): the page is driven over WebDriver as a person would use it, and what it shows is
# checked against `petrel admin` (tests/console/browser.py). A screenshot of each page is saved
# under $CONSOLE_SHOTS (default target/console-screenshots).
#
#   bash tests/console/run.sh path/to/petrel
#
# Ends with a cargo-style "test result:" line so scripts/test.sh counts it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
petrel="$(cd "$(dirname "${1:?usage: run.sh path/to/petrel}")" && pwd)/$(basename "$1")"
roundtrip="$(dirname "$petrel")/examples/roundtrip"
shots="${CONSOLE_SHOTS:-$here/../../target/console-screenshots}"
mkdir -p "$shots"

if ! command -v chromedriver >/dev/null || [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium and chromium-driver"
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >/dev/null
fi
[ -x "$roundtrip" ] && [ -x "$(dirname "$roundtrip")/listen" ] ||
  (cd "$here/../.." && cargo build --quiet -p petrel-client --example roundtrip --example listen)

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_line() { # file prefix
  for _ in $(seq 1 300); do
    grep -q "^$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$1" "$work"/*.log 2>/dev/null; echo "no '$2' in $1"; exit 1
}

"$petrel" standalone --data-dir "$work/data" --namesrv-port 0 --broker-port 0 >"$work/out" 2>"$work/standalone.log" &
pids+=($!); disown
wait_line "$work/out" "Clients:"
namesrv="$(sed -n 's/^NameServer: *//p' "$work/out")"
"$petrel" console -n "$namesrv" --port 0 >"$work/console" 2>"$work/console.log" &
pids+=($!); disown
wait_line "$work/console" "Console:"
console="$(sed -n 's|^Console: *\(http://[^ ]*\).*|\1|p' "$work/console")"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
chromedriver --port="$port" >"$work/chromedriver.log" 2>&1 &
pids+=($!); disown
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/status" >/dev/null && break
  sleep 0.1
done

if python3 "$here/browser.py" "$petrel" "$roundtrip" "$namesrv" "$console" \
  "http://127.0.0.1:$port" "$shots" "$work/profile"; then
  echo "test result: ok. 1 passed; 0 failed"
else
  tail -n 20 "$work/console.log" "$work/chromedriver.log"
  echo "test result: FAILED. 0 passed; 1 failed"
  exit 1
fi
