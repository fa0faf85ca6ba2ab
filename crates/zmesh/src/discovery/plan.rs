//! What a node does with the addresses it selected: where its beacons go, where its inbox
//! listens, which endpoint its HELLO names. A pure function of the interface list, so the rules
//! are unit-tested without touching the machine; the node re-runs it every few seconds
//! ([`RESCAN_INTERVAL`]) and applies the difference.
//!
//! Rules:
//!
//! * **Beacons**, per selected address: IPv4 with a broadcast address → [`Target::Broadcast`]
//!   (unless broadcast is off); IPv4 with a multicast group configured → one
//!   [`Target::Multicast4`] per interface; IPv6 with IPv6 beacons on → one
//!   [`Target::Multicast6`] per interface (not on loopback, which has no multicast), sent from the
//!   interface's preferred address: global or unique-local before link-local. Each beacon leaves
//!   through its own interface, from that interface's address, so each segment hears the
//!   endpoint that is reachable on it.
//! * **Inbox**: bound to the one selected address when there is exactly one (as before: a node
//!   pinned to `lo` listens on `127.0.0.1` only); otherwise to the wildcard address (`[::]`,
//!   dual-stack, when IPv6 is in use; else `0.0.0.0`), so it is reachable at every address it
//!   beacons from, including addresses that appear later.
//! * **HELLO endpoint** (the *primary* address): the first selected IPv4 address that is not
//!   loopback, else the first IPv4, else the first global or unique-local IPv6, else the first
//!   link-local IPv6 (with its scope, meaningful on this host only: peers use the beacon's
//!   source address anyway, and the engine moves a peer known only from its HELLO to the first
//!   endpoint a beacon names).
//!
//! Why a periodic re-scan and not interface notifications: `getifaddrs` costs a few
//! microseconds, the list is cached process-wide for a second (a hundred nodes in one process
//! read it once), it is portable (the `if-addrs` crate), and a change is noticed within
//! [`RESCAN_INTERVAL`] — well inside the few beacon intervals peers allow. Netlink notifications
//! would be Linux-only and add a socket and a task per process for no visible gain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use super::beacon::Target;
use super::hub::is_link_local;
use crate::iface::{self, InterfaceAddr, InterfaceSpec, SelectedInterface};

/// How often a node re-reads its interfaces.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// IPv6 beacon group when none is given: all nodes on the link (czmq's `zbeacon` uses it too).
pub const DEFAULT_IPV6_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// IPv4 multicast TTL when none is given: 1, the beacon stays on the link like a broadcast.
pub const DEFAULT_MULTICAST_TTL: u32 = 1;

/// The beacon settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BeaconOptions {
    /// IPv4 directed broadcast (Zyre's way; default on).
    pub(crate) broadcast: bool,
    /// IPv4 multicast group and TTL.
    pub(crate) multicast: Option<(Ipv4Addr, u32)>,
    /// IPv6 link-local multicast group (`None`: IPv6 beacons off unless only IPv6 is selected).
    pub(crate) ipv6: Option<Ipv6Addr>,
}

/// What the node uses its selected addresses for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Where beacons go.
    pub(crate) targets: Vec<Target>,
    /// Where the inbox listens (port aside).
    pub(crate) bind: IpAddr,
    /// The address named in HELLO (with its scope if link-local).
    pub(crate) primary: SocketAddr,
    /// The interface of the primary address (what `Node::interface` reports).
    pub(crate) interface: SelectedInterface,
    /// Every selected address, for the log.
    pub(crate) addrs: Vec<(String, IpAddr)>,
}

/// The plan for `specs` over `addrs`, or `None` when nothing usable is selected (yet).
pub(crate) fn plan(
    specs: &[InterfaceSpec],
    addrs: &[InterfaceAddr],
    opts: &BeaconOptions,
) -> Option<Plan> {
    let chosen = iface::select_all(specs, addrs, opts.ipv6.is_some());
    if chosen.is_empty() {
        return None;
    }
    let any_v4 = chosen.iter().any(|a| a.ip().is_ipv4());
    let v6_group = opts.ipv6.or((!any_v4).then_some(DEFAULT_IPV6_GROUP));
    let mut targets: Vec<Target> = Vec::new();
    let mut push = |t: Target| {
        if !targets.contains(&t) {
            targets.push(t);
        }
    };
    for a in &chosen {
        match a.ip() {
            IpAddr::V4(ip) => {
                if opts.broadcast {
                    if let Some(b) = a.broadcast_target() {
                        push(Target::Broadcast(b));
                    }
                }
                if let Some((group, ttl)) = opts.multicast {
                    // One per interface: the first IPv4 address of it names it.
                    let first = chosen
                        .iter()
                        .find(|b| b.name == a.name && b.ip().is_ipv4())
                        .map(|b| b.ip());
                    if first == Some(IpAddr::V4(ip)) {
                        push(Target::Multicast4 {
                            group,
                            iface: ip,
                            ttl,
                        });
                    }
                }
            }
            IpAddr::V6(_) => {
                let (Some(group), Some(ifindex)) = (v6_group, a.index) else {
                    continue;
                };
                if a.is_loopback() {
                    continue;
                }
                if let Some(source) = preferred_v6(&chosen, &a.name) {
                    push(Target::Multicast6 {
                        group,
                        ifindex,
                        source,
                    });
                }
            }
        }
    }
    let bind = match chosen.as_slice() {
        [one] if !matches!(one.ip(), IpAddr::V6(ip) if is_link_local(&ip)) => one.ip(),
        _ if chosen.iter().any(|a| a.ip().is_ipv6()) => Ipv6Addr::UNSPECIFIED.into(),
        _ => Ipv4Addr::UNSPECIFIED.into(),
    };
    let v6 = |link_local: bool| {
        chosen.iter().copied().find(
            |a| matches!(a.ip(), IpAddr::V6(ip) if is_link_local(&ip) == link_local && !ip.is_loopback()),
        )
    };
    let primary = chosen
        .iter()
        .copied()
        .find(|a| a.ip().is_ipv4() && !a.is_loopback())
        .or_else(|| chosen.iter().copied().find(|a| a.ip().is_ipv4()))
        .or_else(|| v6(false))
        .or_else(|| v6(true))
        .unwrap_or(chosen[0]);
    let primary_addr = match primary.ip() {
        IpAddr::V6(ip) if is_link_local(&ip) => {
            SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, primary.index.unwrap_or(0)))
        }
        ip => SocketAddr::new(ip, 0),
    };
    Some(Plan {
        targets,
        bind,
        primary: primary_addr,
        interface: SelectedInterface::of(primary),
        addrs: chosen.iter().map(|a| (a.name.clone(), a.ip())).collect(),
    })
}

/// The address IPv6 beacons of interface `name` are sent from: its first global or
/// unique-local address, else its first link-local one.
fn preferred_v6(chosen: &[&InterfaceAddr], name: &str) -> Option<Ipv6Addr> {
    let v6 = || {
        chosen.iter().filter_map(move |a| match a.ip() {
            IpAddr::V6(ip) if a.name == name => Some(ip),
            _ => None,
        })
    };
    v6().find(|ip| !is_link_local(ip)).or_else(|| v6().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(name: &str, index: u32, net: &str, bcast: Option<&str>) -> InterfaceAddr {
        InterfaceAddr {
            name: name.into(),
            net: net.parse().unwrap(),
            broadcast: bcast.map(|b| b.parse().unwrap()),
            up: true,
            index: Some(index),
        }
    }

    fn opts() -> BeaconOptions {
        BeaconOptions {
            broadcast: true,
            multicast: None,
            ipv6: None,
        }
    }

    fn host() -> Vec<InterfaceAddr> {
        vec![
            addr("lo", 1, "127.0.0.1/8", None),
            addr("lo", 1, "::1/128", None),
            addr("eth0", 2, "10.80.0.1/24", Some("10.80.0.255")),
            addr("eth0", 2, "fd00:80::1/64", None),
            addr("eth0", 2, "fe80::1/64", None),
            addr("eth1", 3, "10.81.0.1/24", Some("10.81.0.255")),
            addr("eth1", 3, "fe80::2/64", None),
        ]
    }

    #[test]
    fn one_pinned_address_binds_it_and_broadcasts() {
        let p = plan(&["lo".parse().unwrap()], &host(), &opts()).unwrap();
        assert_eq!(
            p.targets,
            vec![Target::Broadcast("127.255.255.255".parse().unwrap())]
        );
        assert_eq!(p.bind, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.primary, "127.0.0.1:0".parse().unwrap());
    }

    #[test]
    fn every_interface_gets_its_own_beacons_and_the_inbox_listens_everywhere() {
        let o = BeaconOptions {
            broadcast: true,
            multicast: Some(("239.255.90.82".parse().unwrap(), 1)),
            ipv6: Some(DEFAULT_IPV6_GROUP),
        };
        let p = plan(&[], &host(), &o).unwrap();
        let g4: Ipv4Addr = "239.255.90.82".parse().unwrap();
        assert_eq!(
            p.targets,
            vec![
                Target::Broadcast("10.80.0.255".parse().unwrap()),
                Target::Multicast4 {
                    group: g4,
                    iface: "10.80.0.1".parse().unwrap(),
                    ttl: 1
                },
                Target::Multicast6 {
                    group: DEFAULT_IPV6_GROUP,
                    ifindex: 2,
                    source: "fd00:80::1".parse().unwrap()
                },
                Target::Broadcast("10.81.0.255".parse().unwrap()),
                Target::Multicast4 {
                    group: g4,
                    iface: "10.81.0.1".parse().unwrap(),
                    ttl: 1
                },
                Target::Multicast6 {
                    group: DEFAULT_IPV6_GROUP,
                    ifindex: 3,
                    source: "fe80::2".parse().unwrap()
                },
            ]
        );
        assert_eq!(p.bind, Ipv6Addr::UNSPECIFIED);
        assert_eq!(p.primary, "10.80.0.1:0".parse().unwrap());
        assert_eq!(p.interface.name, "eth0");
    }

    #[test]
    fn broadcast_off_multicast_only() {
        let o = BeaconOptions {
            broadcast: false,
            multicast: Some(("239.1.2.3".parse().unwrap(), 4)),
            ipv6: None,
        };
        let p = plan(&["eth1".parse().unwrap()], &host(), &o).unwrap();
        assert_eq!(
            p.targets,
            vec![Target::Multicast4 {
                group: "239.1.2.3".parse().unwrap(),
                iface: "10.81.0.1".parse().unwrap(),
                ttl: 4
            }]
        );
        assert_eq!(p.bind, "10.81.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn an_ipv6_only_host_beacons_on_ipv6_and_names_its_ula_address() {
        let v6only = vec![
            addr("lo", 1, "::1/128", None),
            addr("eth0", 2, "fd00:80::5/64", None),
            addr("eth0", 2, "fe80::5/64", None),
        ];
        // Even without the IPv6 flag: a pinned interface with no IPv4 address.
        let p = plan(&["eth0".parse().unwrap()], &v6only, &opts()).unwrap();
        assert_eq!(
            p.targets,
            vec![Target::Multicast6 {
                group: DEFAULT_IPV6_GROUP,
                ifindex: 2,
                source: "fd00:80::5".parse().unwrap()
            }]
        );
        assert_eq!(p.bind, Ipv6Addr::UNSPECIFIED);
        assert_eq!(p.primary, "[fd00:80::5]:0".parse().unwrap());
        // Link-local only: the primary keeps its scope.
        let ll = vec![addr("eth0", 7, "fe80::5/64", None)];
        let p = plan(&["eth0".parse().unwrap()], &ll, &opts()).unwrap();
        assert_eq!(p.primary, "[fe80::5%7]:0".parse().unwrap());
        assert_eq!(p.bind, Ipv6Addr::UNSPECIFIED);
    }

    #[test]
    fn nothing_selected_is_no_plan() {
        assert!(plan(&["wlan0".parse().unwrap()], &host(), &opts()).is_none());
    }
}
