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
//! Addresses are typed (`IpAddr`): an interface may be chosen by an IPv6 address or network too,
//! and the node then binds and advertises that address. UDP beacons are IPv4 broadcast today, so
//! [`SelectedInterface::broadcast`] is `None` on an IPv6 choice and such a node is found through
//! other discovery sources; the automatic choice stays IPv4, like Zyre's.
//!
//! A node beacons on **every usable interface at once** unless pinned: [`select_all`] turns a
//! list of specs (`--iface eth0 --iface 10.1.0.0/16`, `all`, or the automatic default) into
//! every matching address, and the node re-runs it every few seconds on a fresh [`list`] so
//! interfaces and addresses that appear, change or disappear are followed (`discovery/plan.rs`
//! says what each address is used for).
//!
//! Loopback is supported on purpose (Zyre and Pyre refuse it): on `lo` the node broadcasts to
//! `127.255.255.255`, which Linux delivers to every socket bound to the beacon port, so any number of
//! nodes on one host find each other without a network. The automatic choice never picks loopback.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// What the user asked for when choosing the beacon interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InterfaceSpec {
    /// Every interface that is up and not loopback: its IPv4 addresses with a broadcast address
    /// (Zyre's rule, applied to every interface instead of the first), and its IPv6 addresses
    /// when IPv6 beacons are on. [`select`] keeps Zyre's single choice: the first of them.
    #[default]
    Auto,
    /// Every interface that is up, loopback included (`all`).
    All,
    /// An interface by name, e.g. `eth0` or `lo` (its IPv4 address if it has one).
    Name(String),
    /// The interface that holds this address, e.g. `10.0.0.5`, `127.0.0.1` or `fd00::5`.
    Address(IpAddr),
    /// The first interface with an address inside this network, e.g. `10.0.0.0/8`.
    Cidr(IpNet),
}

/// Error for an interface specification the user typed that cannot be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InterfaceSpecError {
    /// `a/b` that is not a network (`10.0.0.0/8`, `fd00::/8`).
    #[error("invalid network {0:?}: expected ADDRESS/PREFIX, e.g. 10.0.0.0/8")]
    BadCidr(String),
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
        if s.eq_ignore_ascii_case("all") {
            return Ok(InterfaceSpec::All);
        }
        if s.contains('/') {
            return s
                .parse::<IpNet>()
                .map(InterfaceSpec::Cidr)
                .map_err(|_| InterfaceSpecError::BadCidr(s.to_string()));
        }
        match s.parse::<IpAddr>() {
            Ok(a) => Ok(InterfaceSpec::Address(a)),
            Err(_) => Ok(InterfaceSpec::Name(s.to_string())),
        }
    }
}

impl fmt::Display for InterfaceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterfaceSpec::Auto => f.write_str("auto"),
            InterfaceSpec::All => f.write_str("all"),
            InterfaceSpec::Name(n) => f.write_str(n),
            InterfaceSpec::Address(a) => write!(f, "{a}"),
            InterfaceSpec::Cidr(net) => write!(f, "{net}"),
        }
    }
}

/// One address of one interface, as the operating system reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// Interface name (`eth0`, `lo`).
    pub name: String,
    /// The address and its network.
    pub net: IpNet,
    /// Broadcast address reported by the OS, if the interface is IPv4 and broadcast-capable.
    pub broadcast: Option<Ipv4Addr>,
    /// Whether the interface is administratively up (unknown counts as up).
    pub up: bool,
    /// The interface's index (the scope of its link-local IPv6 addresses), when known.
    pub index: Option<u32>,
}

impl InterfaceAddr {
    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.net.addr()
    }
    /// Whether it is a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.ip().is_loopback()
    }
    /// The IPv4 broadcast address beacons go to: the OS's, else the subnet's (`127.255.255.255`
    /// on loopback); `None` for IPv6 and for a point-to-point /32.
    pub fn broadcast_target(&self) -> Option<Ipv4Addr> {
        match self.net {
            IpNet::V4(v4) if self.is_loopback() => Some(v4.broadcast()),
            // An address added without `brd` is reported with its own address (or 0.0.0.0) as
            // broadcast: the subnet's broadcast address is meant.
            IpNet::V4(v4) => Some(
                self.broadcast
                    .filter(|b| *b != v4.addr() && !b.is_unspecified())
                    .unwrap_or_else(|| v4.broadcast()),
            )
            .filter(|b| *b != v4.addr()),
            IpNet::V6(_) => None,
        }
    }
    /// Usable by the automatic choice for IPv4 beacons (Zyre's rule).
    fn auto_v4(&self) -> bool {
        self.up && self.ip().is_ipv4() && !self.is_loopback() && self.broadcast.is_some()
    }
}

/// The interface a node uses: where beacons go and which address it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SelectedInterface {
    /// Interface name.
    pub name: String,
    /// The address the node binds its inbox to and advertises.
    pub ip: IpAddr,
    /// Where IPv4 beacons are sent: the directed broadcast address of the interface's subnet
    /// (`127.255.255.255` on loopback); `None` for an IPv6 address.
    pub broadcast: Option<Ipv4Addr>,
}

impl SelectedInterface {
    /// The selection of one address.
    pub fn of(a: &InterfaceAddr) -> SelectedInterface {
        SelectedInterface {
            name: a.name.clone(),
            ip: a.ip(),
            broadcast: a.broadcast_target(),
        }
    }
}

impl fmt::Display for SelectedInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.broadcast {
            Some(b) => write!(f, "{} ({}, broadcast {b})", self.name, self.ip),
            None => write!(f, "{} ({})", self.name, self.ip),
        }
    }
}

/// Chooses the interface for `spec` among `addrs` (in the order the OS lists them). By name, an
/// IPv4 address of that interface is preferred.
///
/// Returns `None` when nothing matches; the node then keeps retrying (an interface may appear later).
pub fn select(spec: &InterfaceSpec, addrs: &[InterfaceAddr]) -> Option<SelectedInterface> {
    let up = || addrs.iter().filter(|a| a.up);
    let chosen = match spec {
        InterfaceSpec::Auto => up().find(|a| a.auto_v4()),
        InterfaceSpec::All => up().find(|a| a.ip().is_ipv4()).or_else(|| up().next()),
        InterfaceSpec::Name(n) => up()
            .filter(|a| &a.name == n)
            .min_by_key(|a| !a.ip().is_ipv4()),
        InterfaceSpec::Address(ip) => up().find(|a| a.ip() == *ip),
        InterfaceSpec::Cidr(net) => up().find(|a| net.contains(&a.ip())),
    }?;
    Some(SelectedInterface::of(chosen))
}

/// Every address `specs` select among `addrs`, in the order the OS lists them, each once.
/// IPv6 addresses are included when `ipv6` is set, and also without it when a spec names them
/// (an IPv6 address or network) or names an interface that has no IPv4 address. An empty
/// `specs` means [`InterfaceSpec::Auto`].
pub fn select_all<'a>(
    specs: &[InterfaceSpec],
    addrs: &'a [InterfaceAddr],
    ipv6: bool,
) -> Vec<&'a InterfaceAddr> {
    let auto = [InterfaceSpec::Auto];
    let specs = if specs.is_empty() { &auto[..] } else { specs };
    let has_v4 = |name: &str| addrs.iter().any(|a| a.name == name && a.ip().is_ipv4());
    addrs
        .iter()
        .filter(|a| a.up)
        .filter(|a| {
            specs.iter().any(|spec| match spec {
                InterfaceSpec::Auto => {
                    a.auto_v4() || (ipv6 && a.ip().is_ipv6() && !a.is_loopback())
                }
                InterfaceSpec::All => a.ip().is_ipv4() || ipv6,
                InterfaceSpec::Name(n) => &a.name == n && (a.ip().is_ipv4() || ipv6 || !has_v4(n)),
                InterfaceSpec::Address(ip) => a.ip() == *ip,
                InterfaceSpec::Cidr(net) => net.contains(&a.ip()),
            })
        })
        .collect()
}

/// Lists the addresses (IPv4 and IPv6) of this machine's interfaces.
pub fn list() -> std::io::Result<Vec<InterfaceAddr>> {
    let mut out = Vec::new();
    for i in if_addrs::get_if_addrs()? {
        let (net, broadcast) = match &i.addr {
            if_addrs::IfAddr::V4(v4) => (
                ipnet::Ipv4Net::with_netmask(v4.ip, v4.netmask).map(IpNet::V4),
                v4.broadcast,
            ),
            if_addrs::IfAddr::V6(v6) => (
                ipnet::Ipv6Net::with_netmask(v6.ip, v6.netmask).map(IpNet::V6),
                None,
            ),
        };
        let Ok(net) = net else { continue };
        out.push(InterfaceAddr {
            up: is_up(&i.name),
            index: i.index,
            name: i.name.clone(),
            net,
            broadcast,
        });
    }
    Ok(out)
}

/// [`list`], read at most once a second per process (a hundred nodes re-scanning every few
/// seconds then cost one `getifaddrs` a second).
pub(crate) fn list_cached() -> std::io::Result<std::sync::Arc<Vec<InterfaceAddr>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{Duration, Instant};
    type Cache = Mutex<Option<(Instant, Arc<Vec<InterfaceAddr>>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut c = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if let Some((at, l)) = c.as_ref() {
        if now.duration_since(*at) < Duration::from_secs(1) {
            return Ok(l.clone());
        }
    }
    let l = Arc::new(list()?);
    *c = Some((now, l.clone()));
    Ok(l)
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

    fn addr(name: &str, net: &str, bcast: Option<&str>) -> InterfaceAddr {
        InterfaceAddr {
            name: name.into(),
            net: net.parse().unwrap(),
            broadcast: bcast.map(|b| b.parse().unwrap()),
            up: true,
            index: Some(name.len() as u32),
        }
    }

    fn sample() -> Vec<InterfaceAddr> {
        vec![
            addr("lo", "::1/128", None),
            addr("lo", "127.0.0.1/8", None),
            addr("tun0", "10.8.0.2/32", None),
            addr("eth0", "192.168.1.10/24", Some("192.168.1.255")),
            addr("eth1", "fd00::11/64", None),
            addr("eth1", "10.77.0.11/24", Some("10.77.0.255")),
        ]
    }

    #[test]
    fn parses_every_form() {
        assert_eq!("auto".parse(), Ok(InterfaceSpec::Auto));
        assert_eq!("ALL".parse(), Ok(InterfaceSpec::All));
        assert_eq!("lo".parse(), Ok(InterfaceSpec::Name("lo".into())));
        assert_eq!(
            "10.0.0.5".parse(),
            Ok(InterfaceSpec::Address("10.0.0.5".parse().unwrap()))
        );
        assert_eq!(
            "::1".parse(),
            Ok(InterfaceSpec::Address("::1".parse().unwrap()))
        );
        assert_eq!(
            "10.0.0.0/8".parse(),
            Ok(InterfaceSpec::Cidr("10.0.0.0/8".parse().unwrap()))
        );
        assert_eq!(
            "fd00::/8".parse(),
            Ok(InterfaceSpec::Cidr("fd00::/8".parse().unwrap()))
        );
        assert!(matches!(
            "10.0.0.0/33".parse::<InterfaceSpec>(),
            Err(InterfaceSpecError::BadCidr(_))
        ));
        assert!(matches!(
            "10.0.0/8".parse::<InterfaceSpec>(),
            Err(InterfaceSpecError::BadCidr(_))
        ));
        assert_eq!("".parse::<InterfaceSpec>(), Err(InterfaceSpecError::Empty));
    }

    #[test]
    fn auto_skips_loopback_point_to_point_and_ipv6() {
        let s = select(&InterfaceSpec::Auto, &sample()).unwrap();
        assert_eq!(s.name, "eth0");
        assert_eq!(s.broadcast, Some("192.168.1.255".parse().unwrap()));
    }

    #[test]
    fn auto_skips_down_interfaces() {
        let mut addrs = sample();
        addrs[3].up = false;
        assert_eq!(select(&InterfaceSpec::Auto, &addrs).unwrap().name, "eth1");
    }

    #[test]
    fn loopback_by_name_prefers_ipv4_and_broadcasts_to_127_255_255_255() {
        let s = select(&InterfaceSpec::Name("lo".into()), &sample()).unwrap();
        assert_eq!(s.ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(s.broadcast, Some(Ipv4Addr::new(127, 255, 255, 255)));
    }

    #[test]
    fn an_address_without_brd_broadcasts_to_its_subnet() {
        // Linux reports the address itself as broadcast when it was added without `brd`.
        let a = addr("eth0", "10.80.0.11/24", Some("10.80.0.11"));
        assert_eq!(a.broadcast_target(), Some("10.80.0.255".parse().unwrap()));
        let p2p = addr("tun0", "10.8.0.2/32", None);
        assert_eq!(p2p.broadcast_target(), None);
    }

    #[test]
    fn by_address_and_cidr_v4_and_v6() {
        let s = select(&"10.77.0.11".parse().unwrap(), &sample()).unwrap();
        assert_eq!(s.name, "eth1");
        let s = select(&"10.77.0.0/16".parse().unwrap(), &sample()).unwrap();
        assert_eq!(s.name, "eth1");
        assert_eq!(s.broadcast, Some("10.77.0.255".parse().unwrap()));
        let s = select(&"127.0.0.0/8".parse().unwrap(), &sample()).unwrap();
        assert_eq!(s.name, "lo");
        let s = select(&"fd00::/16".parse().unwrap(), &sample()).unwrap();
        assert_eq!((s.name.as_str(), s.broadcast), ("eth1", None));
        assert_eq!(s.ip, "fd00::11".parse::<IpAddr>().unwrap());
        let s = select(&"::1".parse().unwrap(), &sample()).unwrap();
        assert_eq!(s.name, "lo");
        assert!(select(&"172.16.0.0/12".parse().unwrap(), &sample()).is_none());
        assert!(select(&"wlan0".parse().unwrap(), &sample()).is_none());
    }

    #[test]
    fn select_all_takes_every_usable_interface() {
        let a = sample();
        let names = |v: Vec<&InterfaceAddr>| -> Vec<String> {
            v.iter().map(|a| format!("{} {}", a.name, a.ip())).collect()
        };
        // Auto: every broadcast-capable IPv4 LAN address; IPv6 (non-loopback) with ipv6 on.
        assert_eq!(
            names(select_all(&[], &a, false)),
            ["eth0 192.168.1.10", "eth1 10.77.0.11"]
        );
        assert_eq!(
            names(select_all(&[InterfaceSpec::Auto], &a, true)),
            ["eth0 192.168.1.10", "eth1 fd00::11", "eth1 10.77.0.11"]
        );
        // All: loopback and point-to-point too.
        assert_eq!(select_all(&["all".parse().unwrap()], &a, false).len(), 4);
        // Several specs, each address once.
        let specs: Vec<InterfaceSpec> = vec!["lo".parse().unwrap(), "eth1".parse().unwrap()];
        assert_eq!(
            names(select_all(&specs, &a, false)),
            ["lo 127.0.0.1", "eth1 10.77.0.11"]
        );
        // An IPv6 network named explicitly selects IPv6 without the flag.
        assert_eq!(
            names(select_all(&["fd00::/8".parse().unwrap()], &a, false)),
            ["eth1 fd00::11"]
        );
        // An interface with IPv6 only, by name.
        let v6only = vec![
            addr("eth0", "fd00:80::1/64", None),
            addr("eth0", "fe80::1/64", None),
        ];
        assert_eq!(
            select_all(&["eth0".parse().unwrap()], &v6only, false).len(),
            2
        );
        assert!(select_all(&[], &v6only, false).is_empty());
        // Down interfaces never.
        let mut down = sample();
        down[3].up = false;
        assert_eq!(names(select_all(&[], &down, false)), ["eth1 10.77.0.11"]);
    }

    #[test]
    fn none_when_nothing_usable() {
        let only_lo = vec![addr("lo", "127.0.0.1/8", None)];
        assert!(select(&InterfaceSpec::Auto, &only_lo).is_none());
    }
}
