#!/usr/bin/env bash
# Third-party RocketMQ clients against a real `petrel standalone`, over loopback:
#   - PyPI `rocketmq` 0.4.4 (rocketmq-client-cpp inside): produce N messages with keys and
#     tags; push consume all; tag filter; pull consume all; stop and restart a push
#     consumer, which resumes from its committed offsets; a delay-level-2 message arrives
#     no earlier than 5 s; GET_CONSUMER_RUNNING_INFO sent to the broker is answered by the
#     push consumer through it.
#   - PyPI `rocketmq-client-python` 2.0.0 over `rocketmq-python-cvs` 2.1.0.3's
#     librocketmq.so (rocketmq-client-cpp 2.1): transaction messages committed and rolled
#     back by the local transaction and by answers to the broker's check-back; a consumer
#     gets exactly the committed ones, once.
#   - npm `ali-ons` (pure JavaScript): create topics; produce N; consume all; resume;
#     query by key and view by id; tag filter; an SQL92 subscription gets exactly what its
#     expression selects (the broker runs with enablePropertyFilter=true); delay level 2.
#   - PyPI `rocketmq` orderly: send_orderly by key, two orderly push consumer processes, the
#     broker killed with SIGKILL and restarted midway; each key's messages in order, none lost.
#   - PyPI `rocketmq` against a SYNC_MASTER and its slave (three `petrel` processes): the
#     master is killed with SIGKILL under load, and every message it acknowledged is pulled
#     from the slave at the offset its acknowledgement gave.
#   - Petrel's own Rust client, `client/examples/roundtrip.rs` (built beside the binary by
#     `cargo test`): sync, async and batch sends, each message read back whole by the pull and
#     the push consumer.
#   - Large bodies (4000 to 20 500 bytes) between the PyPI `rocketmq` C++ client and Petrel's
#     Rust client (`client/examples/bodies.rs`), both ways: each producer deflates those of
#     4096 bytes and more, and each consumer must get every body whole.
# Then the broker must stop cleanly on SIGTERM (exit 0).
#
#   bash tests/clients/run.sh path/to/petrel        (CLIENT_MESSAGES=10000 by default)
#
# Installs the clients first (tests/clients/install.sh, cached under ~/.cache/petrel).
# Ends with a cargo-style "test result:" line so scripts/test.sh counts the phases.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
petrel="$(cd "$(dirname "${1:?usage: run.sh path/to/petrel}")" && pwd)/$(basename "$1")"
messages="${CLIENT_MESSAGES:-10000}"
timeout_s="${CLIENT_TIMEOUT:-180}"

bash "$here/install.sh" python python_tx node >/dev/null
# shellcheck source=install-node.sh
source "$here/install-node.sh"
install_node 2>/dev/null
python="${PETREL_CLIENTS_DIR:-$HOME/.cache/petrel/clients}/python/venv/bin/python"
python_tx="${PETREL_CLIENTS_DIR:-$HOME/.cache/petrel/clients}/python_tx/venv/bin/python"

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# SQL92 subscriptions (the ali-ons sql step) need the broker's property filter.
echo "enablePropertyFilter=true" >"$work/standalone.conf"
"$petrel" standalone --data-dir "$work/data" --namesrv-port 0 --broker-port 0 \
  -c "$work/standalone.conf" >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 1 300); do
  grep -q "^Clients:" "$work/out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/log"; echo "petrel standalone exited early"; exit 1; }
  sleep 0.1
done
namesrv="$(sed -n 's/^NameServer: *//p' "$work/out")"
[ -n "$namesrv" ] || { cat "$work/out" "$work/log"; echo "petrel standalone did not start"; exit 1; }
echo "petrel standalone up: namesrv $namesrv; $messages messages per client"

passed=0
failed=0
phase() {
  local name="$1"
  shift
  local started=$SECONDS
  if "$@" >"$work/phase.log" 2>&1; then
    passed=$((passed + 1))
    echo "ok    $name ($((SECONDS - started)) s): $(grep -E '^PASS' "$work/phase.log" | tail -1)"
  else
    failed=$((failed + 1))
    echo "FAIL  $name ($((SECONDS - started)) s)"
    tail -20 "$work/phase.log"
  fi
}

run_id="run$$"
roundtrip="$(dirname "$petrel")/examples/roundtrip"
phase "petrel-client roundtrip" env NAMESRV_ADDR="$namesrv" "$roundtrip" "RustRoundTrip$run_id" 2000

py() { PETREL_BIN="$petrel" "$python" "$here/python_client.py" --namesrv "$namesrv" --run-id "py$run_id" --timeout "$timeout_s" "$@"; }
for step in "produce $messages" push-consume tag-filter pull-consume resume delay timer running-info client-reset; do
  # shellcheck disable=SC2086
  phase "python $step" py $step
done
bodies="$(dirname "$petrel")/examples/bodies"
big_to_rust() {
  py big-produce && NAMESRV_ADDR="$namesrv" "$bodies" receive "PyTB_py$run_id"
}
big_from_rust() {
  NAMESRV_ADDR="$namesrv" "$bodies" send "PyTB_pyb$run_id" &&
    PETREL_BIN="$petrel" "$python" "$here/python_client.py" --namesrv "$namesrv" \
      --run-id "pyb$run_id" --timeout "$timeout_s" big-consume
}
phase "large bodies, C++ producer to petrel-client" big_to_rust
phase "large bodies, petrel-client producer to C++" big_from_rust
phase "python transactions (check-back)" "$python_tx" "$here/python_tx_client.py" \
  --namesrv "$namesrv" --run-id "pytx$run_id" --timeout "$timeout_s"

ons() { NODE_PATH="$PETREL_NODE_MODULES" ONS_TIMEOUT_MS=$((timeout_s * 1000)) node "$here/node/ons_client.js" "$namesrv" "ons$run_id" "$@"; }
for step in setup "produce $messages" consume resume query tags sql delay; do
  # shellcheck disable=SC2086
  phase "ali-ons $step" ons $step
done

# A SYNC_MASTER and its slave as separate processes: the C++ producer's sends go to the master,
# which is killed with SIGKILL after 1000 acknowledgements; the C++ pull consumer then finds the
# group's slave in the route and reads every acknowledged message from it, at the offset its
# acknowledgement gave.
ha_pids=()
first_line() { # first_line FILE PATTERN: waits for a line matching PATTERN, prints it
  for _ in $(seq 1 300); do
    grep -m1 -E "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
ha_start() { # ha_start NAME ARGS...: starts petrel ARGS in the background, output in $work/NAME.*
  local name="$1"
  shift
  "$petrel" "$@" >"$work/$name.out" 2>"$work/$name.log" &
  ha_pids+=("$!")
  disown "$!" # no "Killed" notice from the shell when the test kills it
}
ha_group() {
  ha_start ha-namesrv namesrv --listen-port 0
  local ns
  ns="127.0.0.1:$(first_line "$work/ha-namesrv.out" "listening" | sed 's/.*://')"
  for role in SYNC_MASTER SLAVE; do
    local id=0
    [ "$role" = SLAVE ] && id=1
    printf 'brokerName=ha-pair\nbrokerRole=%s\nbrokerId=%s\nbrokerIP1=127.0.0.1\nbindAddress=127.0.0.1\nslaveReadEnable=true\nstorePathRootDir=%s\n' \
      "$role" "$id" "$work/ha-$role" >"$work/ha-$role.conf"
    NAMESRV_ADDR="$ns" ha_start "ha-$role" broker --listen-port 0 -c "$work/ha-$role.conf"
  done
  local slave
  first_line "$work/ha-SYNC_MASTER.out" "clients are told" >/dev/null || return 1
  slave="$(first_line "$work/ha-SLAVE.out" "clients are told" | sed 's/.*clients are told \(.*\))/\1/')"
  "$python" "$here/python_client.py" --namesrv "$ns" --run-id "pyha$run_id" --timeout "$timeout_s" \
    ha-produce 1000 --master-pid "${ha_pids[1]}" --slave "$slave" || return 1
  "$python" "$here/python_client.py" --namesrv "$ns" --run-id "pyha$run_id" --timeout "$timeout_s" \
    pull-consume
}
phase "python SYNC_MASTER killed, slave read" ha_group
for p in "${ha_pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done

# Ordered messages: the C++ producer sends by key (send_orderly), two C++ orderly push consumers
# (separate processes, the second joining later) share the queues under the broker's locks, and
# the broker is killed with SIGKILL and started again on its port midway; every key's messages
# arrive in order, with no gap.
ha_pids=()
orderly_group() {
  ha_start ord-namesrv namesrv --listen-port 0
  local ns port
  ns="127.0.0.1:$(first_line "$work/ord-namesrv.out" "listening" | sed 's/.*://')"
  printf 'brokerName=ordered\nbrokerIP1=127.0.0.1\nbindAddress=127.0.0.1\nhaListenPort=0\nstorePathRootDir=%s\n' \
    "$work/ord-store" >"$work/ord.conf"
  NAMESRV_ADDR="$ns" "$petrel" broker --listen-port 0 -c "$work/ord.conf" \
    >"$work/ord-broker.out" 2>"$work/ord-broker.log" &
  echo "$!" >"$work/ord-broker.pid"
  disown "$!"
  port="$(first_line "$work/ord-broker.out" "clients are told" | sed 's/.*:\([0-9]*\))$/\1/')"
  [ -n "$port" ] || return 1
  cat >"$work/restart-broker.sh" <<EOF
old="\$(cat '$work/ord-broker.pid')"
kill -9 "\$old"
for _ in \$(seq 1 100); do kill -0 "\$old" 2>/dev/null || break; sleep 0.1; done
sleep 0.5
NAMESRV_ADDR='$ns' '$petrel' broker --listen-port $port -c '$work/ord.conf' >'$work/ord-broker2.out' 2>>'$work/ord-broker.log' &
echo "\$!" >'$work/ord-broker.pid'
for _ in \$(seq 1 300); do grep -q 'clients are told' '$work/ord-broker2.out' 2>/dev/null && exit 0; sleep 0.1; done
exit 1
EOF
  "$python" "$here/python_client.py" --namesrv "$ns" --run-id "pyord$run_id" --timeout "$timeout_s" \
    orderly --restart-broker "$work/restart-broker.sh"
}
phase "python orderly consumers, broker restarted" orderly_group
for p in "${ha_pids[@]}" "$(cat "$work/ord-broker.pid" 2>/dev/null)"; do kill -9 "$p" 2>/dev/null || true; done

kill -TERM "$pid"
if wait "$pid"; then
  passed=$((passed + 1))
  echo "ok    broker stops cleanly on SIGTERM"
else
  failed=$((failed + 1))
  echo "FAIL  broker exit status on SIGTERM was not 0"
  tail -20 "$work/log"
fi
pid=""
grep -E " (ERROR|WARN) " "$work/log" | head -20 || true

result=ok
[ "$failed" -eq 0 ] || result=FAILED
echo "test result: $result. $passed passed; $failed failed (third-party clients)"
[ "$failed" -eq 0 ]
