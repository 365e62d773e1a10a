#!/usr/bin/env bash
# Installs the Node.js client test's dependencies (npm `ali-ons`, pinned by
# tests/clients/node/package-lock.json) into
#   ${PETREL_CLIENTS_DIR:-$HOME/.cache/petrel/clients}/node
# Idempotent: skipped when that directory already holds an install made from the
# same package.json + package-lock.json (compared by hash).
#
# Use:  source tests/clients/install-node.sh && install_node
#       bash tests/clients/install-node.sh          (same thing)
# Then: NODE_PATH="$PETREL_NODE_MODULES" node tests/clients/node/ons_client.js ...
# install_node sets and exports PETREL_NODE_MODULES.

install_node() {
    local src dest stamp want have
    src="$(cd "$(dirname "${BASH_SOURCE[0]}")/node" && pwd)" || return 1
    dest="${PETREL_CLIENTS_DIR:-$HOME/.cache/petrel/clients}/node"
    stamp="$dest/.lock-sha256"

    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "install_node: node/npm not found; installing Debian's nodejs and npm" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2 || return 1
    fi

    want="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)"
    have="$(cat "$stamp" 2>/dev/null || true)"
    if [ "$want" = "$have" ] && [ -d "$dest/node_modules/ali-ons" ]; then
        echo "install_node: up to date in $dest" >&2
    else
        echo "install_node: installing into $dest (node $(node --version))" >&2
        mkdir -p "$dest" || return 1
        rm -f "$stamp"
        cp "$src/package.json" "$src/package-lock.json" "$dest/" || return 1
        (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error) >&2 || {
            echo "install_node: npm ci failed" >&2
            return 1
        }
        echo "$want" > "$stamp"
    fi
    PETREL_NODE_MODULES="$dest/node_modules"
    export PETREL_NODE_MODULES
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    install_node
    echo "$PETREL_NODE_MODULES"
fi
