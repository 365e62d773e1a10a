#!/usr/bin/env bash
# Installs the third-party RocketMQ clients that Petrel's compatibility tests
# drive, into "${PETREL_CLIENTS_DIR:-$HOME/.cache/petrel/clients}".
# Idempotent: a client that is already installed and loads is left alone.
#
#   tests/clients/install.sh            # every client
#   tests/clients/install.sh python     # only the named ones
#
# One function per client (install_<name>); add new clients the same way and
# list them in ALL_CLIENTS.
#
# Needs: python3 (3.8+) with venv+pip, x86_64 Linux.  As root with apt-get it
# installs python3-venv / libstdc++6 when they are missing.
set -euo pipefail

CLIENTS_DIR="${PETREL_CLIENTS_DIR:-$HOME/.cache/petrel/clients}"
ALL_CLIENTS=(python python_tx node)

log() { printf '[install] %s\n' "$*" >&2; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

APT_UPDATED=0
apt_install() {
    # apt_install PKG...: only as root on a Debian-like system; returns 1 otherwise
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        return 1
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# ---------------------------------------------------------------- python
# PyPI `rocketmq` 0.4.4: ctypes bindings + a bundled librocketmq.so
# (rocketmq-client-cpp 1.2.x).  Only a manylinux1 x86_64 wheel exists; the
# sdist would need the C++ client built from source, so binaries only.
PY_PKG="rocketmq==0.4.4"
PY_WHEEL_SHA256="19a10219f5074d1050e88cdbdfed3903a374b3f83c0dd2c8773e1e93e33ad02d"

python_ok() {
    # the venv exists, has the pinned version, and the native library loads
    local py="$1"
    [ -x "$py" ] || return 1
    "$py" - <<'EOF' >/dev/null 2>&1
import sys
from importlib import metadata
assert metadata.version("rocketmq") == "0.4.4"
from rocketmq import client  # loads librocketmq.so via ctypes
client.Producer("petrel_install_probe")
EOF
}

install_python() {
    local dir="$CLIENTS_DIR/python"
    local venv="$dir/venv"
    local py="$venv/bin/python"

    if python_ok "$py"; then
        log "python: rocketmq 0.4.4 already installed in $venv"
        echo "PETREL_PY_CLIENT_PYTHON=$py"
        return 0
    fi

    [ "$(uname -s)" = Linux ] || die "python: the rocketmq wheel is Linux-only (got $(uname -s))"
    [ "$(uname -m)" = x86_64 ] || die "python: rocketmq 0.4.4 ships only an x86_64 wheel (got $(uname -m))"

    local base="${PETREL_PYTHON:-}"
    if [ -z "$base" ]; then
        for cand in python3 python3.12 python3.11 python3.10 python3.9 python3.8; do
            if command -v "$cand" >/dev/null 2>&1; then base="$(command -v "$cand")"; break; fi
        done
    fi
    [ -n "$base" ] || die "python: no python3 found (set PETREL_PYTHON)"
    "$base" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' \
        || die "python: $base is older than 3.8"

    mkdir -p "$dir"
    rm -rf "$venv"
    if ! "$base" -m venv "$venv" >/dev/null 2>&1; then
        # Debian's system python keeps ensurepip in python3-venv
        log "python: '$base -m venv' failed; trying to install python3-venv"
        rm -rf "$venv"
        apt_install python3-venv || die "python: cannot create a venv with $base (install python3-venv)"
        "$base" -m venv "$venv" || die "python: cannot create a venv with $base"
    fi

    local req="$dir/requirements.txt"
    printf '%s --hash=sha256:%s\n' "$PY_PKG" "$PY_WHEEL_SHA256" >"$req"
    log "python: installing $PY_PKG into $venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        --only-binary=:all: --require-hashes -r "$req" \
        || die "python: pip install $PY_PKG failed"

    if ! python_ok "$py"; then
        # The wheel bundles its own zlib; it links only glibc, libstdc++ and
        # libgcc_s (see `ldd .../site-packages/rocketmq/librocketmq.so`).
        log "python: librocketmq.so does not load; trying to install libstdc++6"
        apt_install libstdc++6 libgcc-s1 || true
        python_ok "$py" || {
            "$py" -c 'from rocketmq import client' || true
            die "python: rocketmq installed but does not load"
        }
    fi
    log "python: ok ($("$py" -c 'import sys; print(sys.version.split()[0])'))"
    echo "PETREL_PY_CLIENT_PYTHON=$py"
}

# ---------------------------------------------------------------- python_tx
# PyPI `rocketmq-client-python` 2.0.0 (Apache's Python client: TransactionMQProducer) ships
# no native library; `rocketmq-python-cvs` 2.1.0.3 bundles librocketmq.so of
# rocketmq-client-cpp 2.1 into the same `rocketmq` package. Both are sdists that only copy
# files (no compiler). Its own venv: the module name clashes with `rocketmq` 0.4.4.
PY_TX_PINS="rocketmq-client-python==2.0.0 --hash=sha256:692324adaa8107eebd0369117043871d90035ddb1562f9999c5681136f16f738
rocketmq-python-cvs==2.1.0.3 --hash=sha256:99e4ce8008554a74193a3ad94b60f939a4666c48ffabbf4c4417a109daf1419d"
# Building those sdists without build isolation needs `wheel` in the venv (setuptools 65,
# which a Python 3.11 venv starts with, has no bdist_wheel of its own); pinned the same way.
PY_TX_BUILD_PINS="wheel==0.45.1 --hash=sha256:708e7481cc80179af0e556bbf0cc00b8444c7321e2700b8d8580231d13017248"

python_tx_ok() {
    local py="$1"
    [ -x "$py" ] || return 1
    "$py" - <<'EOF2' >/dev/null 2>&1
from importlib import metadata
assert metadata.version("rocketmq-client-python") == "2.0.0"
from rocketmq.client import TransactionMQProducer
TransactionMQProducer("petrel_install_probe", lambda message: 0)
EOF2
}

install_python_tx() {
    local dir="$CLIENTS_DIR/python_tx"
    local venv="$dir/venv"
    local py="$venv/bin/python"
    if python_tx_ok "$py"; then
        log "python_tx: rocketmq-client-python 2.0.0 already installed in $venv"
        echo "PETREL_PY_TX_CLIENT_PYTHON=$py"
        return 0
    fi
    [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || die "python_tx: the bundled library is Linux x86_64 only"
    local base="${PETREL_PYTHON:-$(command -v python3 || true)}"
    [ -n "$base" ] || die "python_tx: no python3 found (set PETREL_PYTHON)"
    mkdir -p "$dir"
    rm -rf "$venv"
    "$base" -m venv "$venv" >/dev/null 2>&1 || apt_install python3-venv || true
    [ -x "$py" ] || "$base" -m venv "$venv" || die "python_tx: cannot create a venv with $base"
    printf '%s\n' "$PY_TX_PINS" >"$dir/requirements.txt"
    printf '%s\n' "$PY_TX_BUILD_PINS" >"$dir/build-requirements.txt"
    "$py" -m pip install --disable-pip-version-check --no-input -q \
        --require-hashes -r "$dir/build-requirements.txt" || die "python_tx: cannot install wheel"
    log "python_tx: installing rocketmq-client-python 2.0.0 and rocketmq-python-cvs 2.1.0.3"
    "$py" -m pip install --disable-pip-version-check --no-input -q --no-build-isolation \
        --require-hashes -r "$dir/requirements.txt" || die "python_tx: pip install failed"
    python_tx_ok "$py" || {
        "$py" -c 'from rocketmq.client import TransactionMQProducer' || true
        die "python_tx: installed but does not load"
    }
    log "python_tx: ok"
    echo "PETREL_PY_TX_CLIENT_PYTHON=$py"
}

# Node.js: npm ali-ons, pinned by node/package-lock.json.
# shellcheck source=install-node.sh
source "$(dirname "${BASH_SOURCE[0]}")/install-node.sh"

# ---------------------------------------------------------------- main
main() {
    local wanted=("$@")
    [ ${#wanted[@]} -gt 0 ] || wanted=("${ALL_CLIENTS[@]}")
    mkdir -p "$CLIENTS_DIR"
    for c in "${wanted[@]}"; do
        declare -F "install_$c" >/dev/null || die "unknown client '$c' (known: ${ALL_CLIENTS[*]})"
        "install_$c"
    done
}

main "$@"
