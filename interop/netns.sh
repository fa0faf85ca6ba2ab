#!/usr/bin/env bash
# Create / remove the private network the interop tests run in (root only).
#
#   interop/netns.sh up       create (idempotent) and verify h1 <-> h2 connectivity
#   interop/netns.sh down     remove everything (idempotent)
#   interop/netns.sh status   print the layout
#
# Layout (see interop/README.md):
#
#   netns zmesh-br:  bridge br0 (up), lo up, veth ends vh1..vh4 enslaved to br0
#   netns zmesh-hN:  lo up, eth0 = veth (peer of vhN) with 10.77.0.1N/24
#
# Nothing is created in the root namespace: each veth pair is created *inside*
# zmesh-hN (`ip -n zmesh-hN link add eth0 ... peer ... netns zmesh-br`), so its
# ends never appear outside the namespaces. The root namespace's eth0 is not ours:
# no packet from these scripts goes anywhere but 10.77.0.x inside the namespaces.
set -euo pipefail

# Overridable only to test this script without disturbing a live layout
# (e.g. ZMESH_NETNS_PREFIX=zmtst ZMESH_NETNS_SUBNET=10.78.0); tests use the defaults.
PREFIX="${ZMESH_NETNS_PREFIX:-zmesh}"
BR_NS="$PREFIX-br"
HOSTS=(1 2 3 4)
SUBNET="${ZMESH_NETNS_SUBNET:-10.77.0}"

host_ns() { echo "$PREFIX-h$1"; }
host_ip() { echo "$SUBNET.1$1"; }

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

require_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "netns.sh: must run as root" >&2
        exit 1
    fi
}

up() {
    require_root
    if ! ns_exists "$BR_NS"; then
        ip netns add "$BR_NS"
    fi
    ip -n "$BR_NS" link set lo up
    if ! ip -n "$BR_NS" link show br0 >/dev/null 2>&1; then
        ip -n "$BR_NS" link add br0 type bridge
    fi
    ip -n "$BR_NS" link set br0 up

    for i in "${HOSTS[@]}"; do
        local ns ip
        ns="$(host_ns "$i")"
        ip="$(host_ip "$i")"
        ns_exists "$ns" || ip netns add "$ns"
        ip -n "$ns" link set lo up
        if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
            # A stale bridge-side end (host namespace deleted by hand) would make
            # the peer creation fail: remove it first.
            ip -n "$BR_NS" link del "vh$i" >/dev/null 2>&1 || true
            ip -n "$ns" link add eth0 type veth peer name "vh$i" netns "$BR_NS"
        fi
        ip -n "$BR_NS" link set "vh$i" master br0
        ip -n "$BR_NS" link set "vh$i" up
        if ! ip -n "$ns" -4 addr show dev eth0 | grep -q "inet $ip/24"; then
            ip -n "$ns" addr add "$ip/24" brd "$SUBNET.255" dev eth0
        fi
        ip -n "$ns" link set eth0 up
    done
    verify
    echo "netns.sh: up ($BR_NS/br0, $PREFIX-h1..h4 = $SUBNET.11..14)"
}

# TCP + UDP round trip h2 -> h1, only to 10.77.0.x inside the namespaces.
verify() {
    local py=python3
    [ -x /usr/bin/python3 ] && py=/usr/bin/python3
    local port=5599
    local ip1
    ip1="$(host_ip 1)"
    ip netns exec "$(host_ns 1)" "$py" - "$ip1" "$port" <<'EOF' &
import socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((ip, port)); t.listen(1); t.settimeout(10)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((ip, port)); u.settimeout(10)
c, _ = t.accept(); c.sendall(c.recv(16))
data, addr = u.recvfrom(16); u.sendto(data, addr)
EOF
    local srv=$!
    local ok=0
    ip netns exec "$(host_ns 2)" "$py" - "$ip1" "$port" <<'EOF' || ok=1
import socket, sys, time
ip, port = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 5
while True:
    try:
        c = socket.create_connection((ip, port), timeout=2); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.05)
c.sendall(b"tcp-ping"); assert c.recv(16) == b"tcp-ping"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(b"udp-ping", (ip, port)); assert u.recvfrom(16)[0] == b"udp-ping"
EOF
    wait "$srv" || ok=1
    if [ "$ok" -ne 0 ]; then
        echo "netns.sh: connectivity check $(host_ns 2) -> $(host_ns 1) ($ip1) FAILED" >&2
        exit 1
    fi
    echo "netns.sh: connectivity $(host_ns 2) -> $(host_ns 1) ok (tcp+udp)"
}

down() {
    require_root
    for i in "${HOSTS[@]}"; do
        local ns
        ns="$(host_ns "$i")"
        # Deleting the namespace destroys its veth end and, with it, the peer end.
        if ns_exists "$ns"; then ip netns del "$ns"; fi
    done
    if ns_exists "$BR_NS"; then ip netns del "$BR_NS"; fi
    echo "netns.sh: down"
}

status() {
    for ns in "$BR_NS" $(for i in "${HOSTS[@]}"; do host_ns "$i"; done); do
        if ns_exists "$ns"; then
            echo "== $ns"
            ip -n "$ns" -br addr
        else
            echo "== $ns (absent)"
        fi
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    verify) verify ;;
    *)
        echo "usage: $0 up|down|status|verify" >&2
        exit 2
        ;;
esac
