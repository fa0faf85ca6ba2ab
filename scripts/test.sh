#!/usr/bin/env bash
# THE project test command:  bash scripts/test.sh [CARGO_ARGS...] [-- TEST_ARGS...]
#
#   1. scripts/install-test-deps.sh   real peers: libzmq, pyre-gevent (venv), zyre.js (npm)
#   2. interop/netns.sh up            private namespaces zmesh-br + zmesh-h1..h4 (10.77.0.0/24)
#   3. cargo build --workspace --all-targets
#   4. cargo test --workspace --no-fail-fast -- --include-ignored
#      (the #[ignore]d tests are the ones needing root + namespaces + peers:
#      ZRE interop with pyre/zyre.js and ZMTP conformance against libzmq)
#   5. interop/netns.sh down          on exit, also on failure or Ctrl-C
#
# Exits with cargo test's status. Needs root (namespaces). Extra arguments go to
# `cargo test` (before `--`) and to the test harness (after `--`), e.g.
#   bash scripts/test.sh -p zmesh -- interop
# ZMESH_KEEP_NETNS=1 leaves the namespaces up afterwards (for debugging with
# interop/selfcheck.sh or by hand); namespaces that were already up before the
# run are left up too (another run may be using them). Agent logs:
# target/interop-logs/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CARGO_ARGS=()
TEST_ARGS=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then
        shift
        TEST_ARGS=("$@")
        break
    fi
    CARGO_ARGS+=("$1")
    shift
done

step() { echo; echo "== [test.sh] $*"; }
SECONDS=0

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: must run as root (it creates network namespaces for the interop tests)." >&2
    echo "Without root, run the non-interop tests only: cargo test --workspace" >&2
    exit 1
fi

step "install test dependencies"
bash scripts/install-test-deps.sh

step "network namespaces"
netns_was_up=0
if ip netns list | awk '{print $1}' | grep -qx zmesh-h1; then netns_was_up=1; fi
cleanup() {
    # The discovery tests build and remove their own zdb-* namespaces; a killed run may leave them.
    bash interop/netns-discovery.sh down || true
    if [ "${ZMESH_KEEP_NETNS:-0}" = 1 ]; then
        echo "[test.sh] ZMESH_KEEP_NETNS=1: leaving namespaces up (interop/netns.sh down removes them)"
    elif [ "$netns_was_up" = 1 ]; then
        echo "[test.sh] namespaces were up before this run: leaving them up"
    else
        bash interop/netns.sh down || true
    fi
}
trap cleanup EXIT
bash interop/netns.sh up

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export ZMESH_BIN="$TARGET_DIR/debug/zmesh"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

step "cargo build --workspace --all-targets"
cargo build --workspace --all-targets "${CARGO_ARGS[@]}"
if [ ! -x "$ZMESH_BIN" ]; then
    echo "[test.sh] warning: $ZMESH_BIN not built; zmesh interop agents will fail" >&2
fi

step "cargo test --workspace -- --include-ignored (ZMESH_BIN=$ZMESH_BIN)"
status=0
cargo test --workspace --no-fail-fast "${CARGO_ARGS[@]}" -- --include-ignored "${TEST_ARGS[@]}" || status=$?

step "done in ${SECONDS}s: cargo test exit status $status (agent logs: $ROOT/target/interop-logs)"
exit "$status"
