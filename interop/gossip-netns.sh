#!/usr/bin/env bash
# Private namespaces for the discovery-without-UDP tests (crates/zmesh/tests/gossip_netns.rs).
#
#   interop/gossip-netns.sh up      create (idempotent)
#   interop/gossip-netns.sh down    remove everything (idempotent)
#
# Two segments joined by one router, every UDP packet dropped (nftables), like an overlay or VPN
# where broadcast and multicast do not pass:
#
#   segment A: netns zdg-bra (bridge br0); hosts zdg-a1..a3, eth0 = 10.82.0.11..13/24
#   segment B: netns zdg-brb (bridge br0); hosts zdg-b1..b2, eth0 = 10.83.0.11..12/24
#   router:    netns zdg-hub, eth0 = 10.82.0.1 (A), eth1 = 10.83.0.1 (B), forwarding on;
#              every host's default route goes through it (the gossip hub and DNS server run here)
#
# Nothing is created in the root namespace (each veth pair is created inside a zdg-* namespace
# with its peer moved straight into another), and no packet goes anywhere but 10.82/10.83 inside
# these namespaces.
set -euo pipefail

A_HOSTS=(1 2 3)
B_HOSTS=(1 2)

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }
ensure_ns() { ns_exists "$1" || ip netns add "$1"; ip -n "$1" link set lo up; }

drop_udp() {
    ip netns exec "$1" nft -f - <<'NFT'
table inet zdg
delete table inet zdg
table inet zdg {
    chain zin { type filter hook input priority 0; meta l4proto udp drop; }
    chain zout { type filter hook output priority 0; meta l4proto udp drop; }
    chain zfwd { type filter hook forward priority 0; meta l4proto udp drop; }
}
NFT
}

# host NS, bridge NS, veth name on the bridge side, address/prefix, gateway
attach() {
    local ns=$1 br=$2 vname=$3 addr=$4 gw=$5 dev=${6:-eth0}
    ensure_ns "$ns"
    if ! ip -n "$ns" link show "$dev" >/dev/null 2>&1; then
        ip -n "$br" link del "$vname" >/dev/null 2>&1 || true
        ip -n "$ns" link add "$dev" type veth peer name "$vname" netns "$br"
    fi
    ip -n "$br" link set "$vname" master br0
    ip -n "$br" link set "$vname" up
    ip -n "$ns" addr replace "$addr" dev "$dev"
    ip -n "$ns" link set "$dev" up
    if [ -n "$gw" ]; then ip -n "$ns" route replace default via "$gw"; fi
    drop_udp "$ns"
}

up() {
    [ "$(id -u)" -eq 0 ] || { echo "gossip-netns.sh: must run as root" >&2; exit 1; }
    for br in zdg-bra zdg-brb; do
        ensure_ns "$br"
        ip -n "$br" link show br0 >/dev/null 2>&1 || ip -n "$br" link add br0 type bridge
        ip -n "$br" link set br0 up
    done
    attach zdg-hub zdg-bra vhub 10.82.0.1/24 "" eth0
    attach zdg-hub zdg-brb vhub 10.83.0.1/24 "" eth1
    ip netns exec zdg-hub sysctl -q -w net.ipv4.ip_forward=1
    for i in "${A_HOSTS[@]}"; do attach "zdg-a$i" zdg-bra "va$i" "10.82.0.1$i/24" 10.82.0.1; done
    for i in "${B_HOSTS[@]}"; do attach "zdg-b$i" zdg-brb "vb$i" "10.83.0.1$i/24" 10.83.0.1; done
    echo "gossip-netns.sh: up (zdg-a1..a3 = 10.82.0.11..13, zdg-b1..b2 = 10.83.0.11..12, router zdg-hub; UDP dropped)"
}

down() {
    for ns in zdg-a1 zdg-a2 zdg-a3 zdg-b1 zdg-b2 zdg-hub zdg-bra zdg-brb; do
        if ns_exists "$ns"; then ip netns del "$ns"; fi
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
