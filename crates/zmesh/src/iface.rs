//! Choosing the network interface a node beacons on.
//!
//! Zyre picks "the first usable LAN interface" unless told otherwise, and users of every ZRE
//! implementation trip over that on multi-homed hosts (see `zyre-user-asks.md` items 2–5). zmesh keeps
//! the same zero-configuration default but makes the choice explicit and observable:
//!
//! * [`InterfaceSpec`] says what the user asked for: automatic, an interface **name** (`eth0`), an
//!   **address** of an interface (`10.0.0.5`), or a **CIDR** (`10.0.0.0/8`: the first interface with an
//!   address inside it).
//! * [`select`] is a pure function from a spec and a list of interface addresses to the chosen
//!   [`SelectedInterface`], so the rules are unit-tested without touching the machine.
//! * The node logs the interface, address and broadcast address it uses, and the advertised TCP
//!   endpoint is always derived from the **same address** the beacon goes out from (Zyre issue #698:
//!   aliased interfaces caused endless ENTER/EXIT when the two differed).
//!
//! Loopback is supported on purpose (Zyre and Pyre refuse it): on `lo` the node broadcasts to
//! `127.255.255.255`, which Linux delivers to every socket bound to the beacon port, so any number of
//! nodes on one host find each other without a network. The automatic choice never picks loopback.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// What the user asked for when choosing the beacon interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InterfaceSpec {
    /// The first interface that is up, IPv4, broadcast-capable and not loopback (Zyre's default).
    #[default]
    Auto,
    /// An interface by name, e.g. `eth0` or `lo`.
    Name(String),
    /// The interface that holds this address, e.g. `10.0.0.5` or `127.0.0.1`.
    Address(Ipv4Addr),
    /// The first interface with an address inside this network, e.g. `10.0.0.0/8`.
    Cidr {
        /// Network address.
        network: Ipv4Addr,
        /// Prefix length, 0..=32.
        prefix: u8,
    },
}

/// Error for an interface specification the user typed that cannot be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InterfaceSpecError {
    /// The CIDR prefix is not a number in 0..=32.
    #[error("invalid CIDR prefix in {0:?}: expected a number from 0 to 32")]
    BadPrefix(String),
    /// The address part of a CIDR is not an IPv4 address.
    #[error("invalid network address in {0:?}: expected an IPv4 address")]
    BadNetwork(String),
    /// IPv6 interfaces are not supported yet for beaconing.
    #[error("IPv6 beacon interfaces are not supported yet: {0}")]
    Ipv6(String),
    /// Empty string.
    #[error("empty interface specification")]
    Empty,
}

impl FromStr for InterfaceSpec {
    type Err = InterfaceSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(InterfaceSpecError::Empty);
        }
        if s.eq_ignore_ascii_case("auto") {
            return Ok(InterfaceSpec::Auto);
        }
        if let Some((net, prefix)) = s.split_once('/') {
            let network: Ipv4Addr = net
                .parse()
                .map_err(|_| InterfaceSpecError::BadNetwork(s.to_string()))?;
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= 32)
                .ok_or_else(|| InterfaceSpecError::BadPrefix(s.to_string()))?;
            return Ok(InterfaceSpec::Cidr { network, prefix });
        }
        match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Ok(InterfaceSpec::Address(a)),
            Ok(IpAddr::V6(_)) => Err(InterfaceSpecError::Ipv6(s.to_string())),
            Err(_) => Ok(InterfaceSpec::Name(s.to_string())),
        }
    }
}

impl fmt::Display for InterfaceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterfaceSpec::Auto => f.write_str("auto"),
            InterfaceSpec::Name(n) => f.write_str(n),
            InterfaceSpec::Address(a) => write!(f, "{a}"),
            InterfaceSpec::Cidr { network, prefix } => write!(f, "{network}/{prefix}"),
        }
    }
}

/// One IPv4 address of one interface, as the operating system reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// Interface name (`eth0`, `lo`).
    pub name: String,
    /// The address.
    pub ip: Ipv4Addr,
    /// Its netmask.
    pub netmask: Ipv4Addr,
    /// Broadcast address reported by the OS, if the interface is broadcast-capable.
    pub broadcast: Option<Ipv4Addr>,
    /// Whether the interface is administratively up (unknown counts as up).
    pub up: bool,
}

impl InterfaceAddr {
    fn is_loopback(&self) -> bool {
        self.ip.is_loopback()
    }
}

/// The interface a node uses: where beacons go and which address it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedInterface {
    /// Interface name.
    pub name: String,
    /// The address the node binds its inbox to and advertises.
    pub ip: Ipv4Addr,
    /// Where beacons are sent: the directed broadcast address of the interface's subnet
    /// (`127.255.255.255` on loopback).
    pub broadcast: Ipv4Addr,
}

impl fmt::Display for SelectedInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, broadcast {})",
            self.name, self.ip, self.broadcast
        )
    }
}

/// Directed broadcast address of `ip`/`netmask`.
fn directed_broadcast(ip: Ipv4Addr, netmask: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) | !u32::from(netmask))
}

fn in_cidr(ip: Ipv4Addr, network: Ipv4Addr, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    (u32::from(ip) & mask) == (u32::from(network) & mask)
}

/// Chooses the interface for `spec` among `addrs` (in the order the OS lists them).
///
/// Returns `None` when nothing matches; the node then keeps retrying (an interface may appear later).
pub fn select(spec: &InterfaceSpec, addrs: &[InterfaceAddr]) -> Option<SelectedInterface> {
    let chosen = match spec {
        InterfaceSpec::Auto => addrs
            .iter()
            .find(|a| a.up && !a.is_loopback() && a.broadcast.is_some()),
        InterfaceSpec::Name(n) => addrs.iter().find(|a| &a.name == n && a.up),
        InterfaceSpec::Address(ip) => addrs.iter().find(|a| a.ip == *ip && a.up),
        InterfaceSpec::Cidr { network, prefix } => addrs
            .iter()
            .find(|a| a.up && in_cidr(a.ip, *network, *prefix)),
    }?;
    let broadcast = if chosen.is_loopback() {
        // Loopback has no broadcast flag; the subnet's directed broadcast still works on Linux.
        directed_broadcast(chosen.ip, chosen.netmask)
    } else {
        chosen
            .broadcast
            .unwrap_or_else(|| directed_broadcast(chosen.ip, chosen.netmask))
    };
    Some(SelectedInterface {
        name: chosen.name.clone(),
        ip: chosen.ip,
        broadcast,
    })
}

/// Lists the IPv4 addresses of this machine's interfaces.
pub fn list() -> std::io::Result<Vec<InterfaceAddr>> {
    let mut out = Vec::new();
    for i in if_addrs::get_if_addrs()? {
        if let if_addrs::IfAddr::V4(v4) = &i.addr {
            out.push(InterfaceAddr {
                up: is_up(&i.name),
                name: i.name.clone(),
                ip: v4.ip,
                netmask: v4.netmask,
                broadcast: v4.broadcast,
            });
        }
    }
    Ok(out)
}

/// Reads IFF_UP from sysfs on Linux; elsewhere (or if unreadable) assumes up.
fn is_up(name: &str) -> bool {
    const IFF_UP: u32 = 0x1;
    std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
        .map(|flags| flags & IFF_UP != 0)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(name: &str, ip: &str, mask: &str, bcast: Option<&str>) -> InterfaceAddr {
        InterfaceAddr {
            name: name.into(),
            ip: ip.parse().unwrap(),
            netmask: mask.parse().unwrap(),
            broadcast: bcast.map(|b| b.parse().unwrap()),
            up: true,
        }
    }

    fn sample() -> Vec<InterfaceAddr> {
        vec![
            addr("lo", "127.0.0.1", "255.0.0.0", None),
            addr("tun0", "10.8.0.2", "255.255.255.255", None),
            addr(
                "eth0",
                "192.168.1.10",
                "255.255.255.0",
                Some("192.168.1.255"),
            ),
            addr("eth1", "10.77.0.11", "255.255.255.0", Some("10.77.0.255")),
        ]
    }

    #[test]
    fn parses_every_form() {
        assert_eq!("auto".parse(), Ok(InterfaceSpec::Auto));
        assert_eq!("lo".parse(), Ok(InterfaceSpec::Name("lo".into())));
        assert_eq!(
            "10.0.0.5".parse(),
            Ok(InterfaceSpec::Address("10.0.0.5".parse().unwrap()))
        );
        assert_eq!(
            "10.0.0.0/8".parse(),
            Ok(InterfaceSpec::Cidr {
                network: "10.0.0.0".parse().unwrap(),
                prefix: 8
            })
        );
        assert!(matches!(
            "10.0.0.0/33".parse::<InterfaceSpec>(),
            Err(InterfaceSpecError::BadPrefix(_))
        ));
        assert!(matches!(
            "10.0.0/8".parse::<InterfaceSpec>(),
            Err(InterfaceSpecError::BadNetwork(_))
        ));
        assert!(matches!(
            "::1".parse::<InterfaceSpec>(),
            Err(InterfaceSpecError::Ipv6(_))
        ));
        assert_eq!("".parse::<InterfaceSpec>(), Err(InterfaceSpecError::Empty));
    }

    #[test]
    fn auto_skips_loopback_and_point_to_point() {
        let s = select(&InterfaceSpec::Auto, &sample()).unwrap();
        assert_eq!(s.name, "eth0");
        assert_eq!(s.broadcast, "192.168.1.255".parse::<Ipv4Addr>().unwrap());
    }

    #[test]
    fn auto_skips_down_interfaces() {
        let mut addrs = sample();
        addrs[2].up = false;
        assert_eq!(select(&InterfaceSpec::Auto, &addrs).unwrap().name, "eth1");
    }

    #[test]
    fn loopback_by_name_broadcasts_to_127_255_255_255() {
        let s = select(&InterfaceSpec::Name("lo".into()), &sample()).unwrap();
        assert_eq!(s.ip, Ipv4Addr::LOCALHOST);
        assert_eq!(s.broadcast, Ipv4Addr::new(127, 255, 255, 255));
    }

    #[test]
    fn by_address_and_cidr() {
        let s = select(&"10.77.0.11".parse().unwrap(), &sample()).unwrap();
        assert_eq!(s.name, "eth1");
        let s = select(&"10.77.0.0/16".parse().unwrap(), &sample()).unwrap();
        assert_eq!(s.name, "eth1");
        assert_eq!(s.broadcast, "10.77.0.255".parse::<Ipv4Addr>().unwrap());
        let s = select(&"127.0.0.0/8".parse().unwrap(), &sample()).unwrap();
        assert_eq!(s.name, "lo");
        assert!(select(&"172.16.0.0/12".parse().unwrap(), &sample()).is_none());
        assert!(select(&"wlan0".parse().unwrap(), &sample()).is_none());
    }

    #[test]
    fn none_when_nothing_usable() {
        let only_lo = vec![addr("lo", "127.0.0.1", "255.0.0.0", None)];
        assert!(select(&InterfaceSpec::Auto, &only_lo).is_none());
    }
}
