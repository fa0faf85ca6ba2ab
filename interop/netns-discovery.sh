#!/usr/bin/env bash
# Private networks for the discovery tests (crates/zmesh/tests/discovery_netns.rs); root only.
#
#   interop/netns-discovery.sh up      create from scratch (removes a leftover first)
#   interop/netns-discovery.sh down    remove everything (idempotent)
#
# Layout (names zdb-*, so it never touches interop/netns.sh's zmesh-* namespaces):
#
#   netns zdb-br:  bridges br0 (segment A) and br1 (segment B), veth ends enslaved
#   zdb-h1: eth0 on A 10.80.0.11 fd00:80::11, eth1 on B 10.81.0.11   (two segments)
#   zdb-h2: eth0 on A 10.80.0.12 fd00:80::12
#   zdb-h3: eth0 on A 10.80.0.13 fd00:80::13
#   zdb-h4: eth0 on B 10.81.0.14
#   zdb-h5: eth0 on A fd00:80::15 only (IPv6-only host)
#   zdb-h6: eth0 on A fd00:80::16 only (IPv6-only host)
#
# Every veth pair is created inside the namespaces; nothing appears in the root namespace and no
# packet leaves them. IPv6 addresses are added with `nodad` so they are usable at once.
set -euo pipefail

BR=zdb-br
HOSTS=(1 2 3 4 5 6)

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

down() {
    for i in "${HOSTS[@]}"; do
        if ns_exists "zdb-h$i"; then ip netns del "zdb-h$i"; fi
    done
    if ns_exists "$BR"; then ip netns del "$BR"; fi
}

# link NS IFACE BRIDGE TAG: a veth IFACE in NS, its other end TAG in the bridge namespace.
link() {
    ip -n "$1" link add "$2" type veth peer name "$4" netns "$BR"
    ip -n "$BR" link set "$4" master "$3" up
    ip -n "$1" link set "$2" up
}

up() {
    if [ "$(id -u)" -ne 0 ]; then echo "netns-discovery.sh: must run as root" >&2; exit 1; fi
    down
    ip netns add "$BR"
    ip -n "$BR" link set lo up
    for b in br0 br1; do
        ip -n "$BR" link add "$b" type bridge
        # No IGMP/MLD snooping: multicast floods like broadcast on these test bridges.
        ip -n "$BR" link set "$b" type bridge mcast_snooping 0
        ip -n "$BR" link set "$b" up
    done
    for i in "${HOSTS[@]}"; do
        ip netns add "zdb-h$i"
        ip -n "zdb-h$i" link set lo up
    done
    link zdb-h1 eth0 br0 a1; link zdb-h1 eth1 br1 b1
    link zdb-h2 eth0 br0 a2
    link zdb-h3 eth0 br0 a3
    link zdb-h4 eth0 br1 b4
    link zdb-h5 eth0 br0 a5
    link zdb-h6 eth0 br0 a6
    for i in 1 2 3; do
        ip -n "zdb-h$i" addr add "10.80.0.1$i/24" dev eth0
        ip -n "zdb-h$i" addr add "fd00:80::1$i/64" dev eth0 nodad
    done
    ip -n zdb-h1 addr add 10.81.0.11/24 dev eth1
    ip -n zdb-h4 addr add 10.81.0.14/24 dev eth0
    for i in 5 6; do
        ip -n "zdb-h$i" addr add "fd00:80::1$i/64" dev eth0 nodad
    done
    # Link-local addresses go through DAD (~1-2 s); wait until none is tentative.
    for _ in $(seq 50); do
        tentative=0
        for i in "${HOSTS[@]}"; do
            if ip -n "zdb-h$i" -6 addr show tentative | grep -q inet6; then tentative=1; fi
        done
        [ "$tentative" = 0 ] && break
        sleep 0.1
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
