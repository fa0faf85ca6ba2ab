#!/usr/bin/env bash
# Install everything the interop / conformance tests need, idempotently.
#
#   - Debian packages: iproute2 (ip netns), libzmq3-dev (system libzmq 4.3.4 for
#     the zyre.js native addon and the libzmq conformance tests), nftables (fault
#     injection inside namespaces), tcpdump (the secure-mode test proves no plaintext
#     crosses the link), python3-venv, build tools for node-gyp, nats-server (the NATS
#     baselines of zmesh-bench scenario 10, on loopback), dnsmasq-base (the DNS server of
#     the discovery-without-UDP test, gossip_netns), libczmq-dev (czmq's own zgossip for the
#     gossip interop test, gossip_czmq).
#   - interop/.venv: pinned pyre-gevent + pyzmq (interop/requirements.txt).
#   - interop/node_modules: zyre.js@1.3.0 built against the system libzmq
#     (npm_config_zmq_external=true; there is no prebuilt zeromq@5 for Node 20 and
#     its fallback would download libzmq from the internet).
#
# Meant for a fresh Debian 12 machine as root (CI=true, no stdin). When everything
# is already present it only performs cheap checks (well under a second).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INTEROP="$ROOT/interop"
export DEBIAN_FRONTEND=noninteractive

log() { echo "[install-test-deps] $*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# ---------------------------------------------------------------- apt packages
APT_PKGS=(iproute2 libzmq3-dev nftables tcpdump python3-venv python3-dev build-essential pkg-config nodejs npm nats-server dnsmasq-base libczmq-dev)
missing=()
for p in "${APT_PKGS[@]}"; do
    # nodejs/npm may come from elsewhere (e.g. nodesource, a tarball): accept any on PATH.
    case "$p" in
        nodejs) command -v node >/dev/null 2>&1 && continue ;;
        npm) command -v npm >/dev/null 2>&1 && continue ;;
    esac
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    log "apt: all present (${APT_PKGS[*]})"
fi

# ---------------------------------------------------------------- python venv
# Use Debian's interpreter so the venv does not depend on pyenv shims.
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"
VENV="$INTEROP/.venv"
REQ="$INTEROP/requirements.txt"
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && "$VENV/bin/python" -c 'import pyre_gevent, zmq' 2>/dev/null; then
    log "venv: $VENV up to date"
else
    log "venv: creating $VENV and installing $(grep -v '^#' "$REQ" | xargs)"
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
    echo "$want" >"$STAMP"
fi

# ---------------------------------------------------------------- zyre.js
NSTAMP="$INTEROP/node_modules/.zmesh-lock.sha256"
nwant="$(cat "$INTEROP/package.json" "$INTEROP/package-lock.json" 2>/dev/null | sha256sum | cut -d' ' -f1 || true)"
if [ -f "$NSTAMP" ] && [ "$(cat "$NSTAMP")" = "$nwant" ] \
    && (cd "$INTEROP" && node -e 'require("zyre.js")' 2>/dev/null); then
    log "npm: zyre.js up to date"
else
    log "npm: installing zyre.js (npm_config_zmq_external=true, system libzmq)"
    cd "$INTEROP"
    export npm_config_zmq_external=true
    if [ -f package-lock.json ]; then
        npm ci --no-audit --no-fund --loglevel=error
    else
        npm install --no-audit --no-fund --loglevel=error
    fi
    cd "$ROOT"
    # Recompute: a first install has just written package-lock.json.
    nwant="$(cat "$INTEROP/package.json" "$INTEROP/package-lock.json" | sha256sum | cut -d' ' -f1)"
    echo "$nwant" >"$NSTAMP"
fi

log "done"
