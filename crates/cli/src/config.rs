//! Node settings from the command line, the environment and a TOML file, in that order of
//! precedence, over the built-in defaults (docs/configuration.md has the one table).
//!
//! How: the defaults stay where clap states them (the `#[arg]` attributes). Before parsing, each
//! setting's value from the environment (`ZMESH_*`, and Zyre's `ZSYS_INTERFACE` for the
//! interface) or else from the file (`--config FILE` or `ZMESH_CONFIG`) becomes that argument's
//! default, after being checked by the argument's own value parser — so a flag still wins, a bad
//! value is refused with a message naming where it came from, and no rule is written twice.
//! [`SETTINGS`] is the list of settings with their variable names.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, FromArgMatches};
use zmesh::discovery::peers::PeerSpec;
use zmesh::NodeBuilder;

use crate::Cli;

/// One setting: its long flag, its environment variable, and whether it takes several values
/// (comma-separated in the variable, an array in the file).
pub(crate) struct Setting {
    pub flag: &'static str,
    pub env: &'static str,
    pub multi: bool,
}

const fn one(flag: &'static str, env: &'static str) -> Setting {
    Setting {
        flag,
        env,
        multi: false,
    }
}

const fn many(flag: &'static str, env: &'static str) -> Setting {
    Setting {
        flag,
        env,
        multi: true,
    }
}

/// Every setting that may come from the environment or the file.
pub(crate) const SETTINGS: &[Setting] = &[
    one("name", "ZMESH_NAME"),
    many("iface", "ZMESH_IFACE"),
    one("multicast", "ZMESH_MULTICAST"),
    one("multicast-ttl", "ZMESH_MULTICAST_TTL"),
    one("no-broadcast", "ZMESH_NO_BROADCAST"),
    one("ipv6", "ZMESH_IPV6"),
    one("no-same-host", "ZMESH_NO_SAME_HOST"),
    one("port", "ZMESH_PORT"),
    many("header", "ZMESH_HEADERS"),
    many("option", "ZMESH_OPTIONS"),
    one("interval", "ZMESH_INTERVAL"),
    one("evasive", "ZMESH_EVASIVE"),
    one("expired", "ZMESH_EXPIRED"),
    one("tcp-port", "ZMESH_TCP_PORT"),
    one("advertise", "ZMESH_ADVERTISE"),
    one("gossip-bind", "ZMESH_GOSSIP_BIND"),
    many("gossip-connect", "ZMESH_GOSSIP_CONNECT"),
    many("peer", "ZMESH_PEERS"),
    one("dns-server", "ZMESH_DNS_SERVER"),
    one("dns-interval", "ZMESH_DNS_INTERVAL"),
    one("no-beacons", "ZMESH_NO_BEACONS"),
    one("curve-secret", "ZMESH_CURVE_SECRET"),
    one("allow", "ZMESH_ALLOW"),
    one("log", "ZMESH_LOG"),
];

/// The variable naming the configuration file when `--config` is not given.
pub(crate) const CONFIG_ENV: &str = "ZMESH_CONFIG";
/// Zyre's (czmq's) interface variable, honoured after `ZMESH_IFACE`.
pub(crate) const ZSYS_INTERFACE: &str = "ZSYS_INTERFACE";

/// Discovery options every command takes (global flags).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct DiscoveryArgs {
    /// Read settings from this TOML file (keys are the long flag names: port = 5670,
    /// peer = ["tcp://hub:5671"], [header] X-ROLE = "worker"). Flags and ZMESH_* variables win
    /// over it. Also ZMESH_CONFIG.
    #[arg(long, global = true, help_heading = crate::GLOBAL, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Be a zgossip hub on ENDPOINT (tcp://ip:port), as Zyre's zyre_gossip_bind: nodes that
    /// join it find each other without UDP.
    #[arg(long, global = true, help_heading = crate::GLOBAL, value_name = "ENDPOINT")]
    gossip_bind: Option<String>,
    /// Join the zgossip hub at ENDPOINT (zmesh, Zyre or czmq's zgossip); repeatable. A secure
    /// hub (secure mode) is given as ENDPOINT|Z85-PUBLIC-KEY.
    #[arg(long, global = true, help_heading = crate::GLOBAL, value_name = "ENDPOINT")]
    gossip_connect: Vec<String>,
    /// A static peer (repeatable): UUID@tcp://ip:port (a ZRE node), tcp://host:port (a gossip
    /// hub; a host name may resolve to several addresses) or srv:DOMAIN (SRV _zre._tcp.DOMAIN).
    #[arg(long, global = true, help_heading = crate::GLOBAL, value_name = "PEER",
          value_parser = parse_peer)]
    peer: Vec<PeerSpec>,
    /// DNS server (ip or ip:port, queried over TCP) for --peer names; default: the system's.
    #[arg(long, global = true, help_heading = crate::GLOBAL, value_name = "ADDR",
          value_parser = parse_dns_server)]
    dns_server: Option<SocketAddr>,
    /// How often --peer names are resolved again: seconds (2.5) or a duration (500ms, 1m).
    /// Default 10 s.
    #[arg(long, global = true, help_heading = crate::GLOBAL, value_name = "DURATION",
          value_parser = crate::parse::positive_duration)]
    dns_interval: Option<std::time::Duration>,
    /// Do not send or listen for UDP beacons (peers come from gossip and --peer only).
    #[arg(long, global = true, help_heading = crate::GLOBAL)]
    no_beacons: bool,
}

fn parse_peer(s: &str) -> Result<PeerSpec, String> {
    s.parse()
        .map_err(|e: zmesh::discovery::peers::PeerSpecError| e.to_string())
}

fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("expected an IP address or ip:port, got {s:?}"))
}

impl DiscoveryArgs {
    /// Adds the discovery settings to a node.
    pub(crate) fn apply(&self, mut b: NodeBuilder) -> NodeBuilder {
        if let Some(ep) = &self.gossip_bind {
            b = b.gossip_bind(ep);
        }
        for ep in &self.gossip_connect {
            b = b.gossip_connect(ep);
        }
        for p in &self.peer {
            b = b.peer(p.clone());
        }
        if let Some(s) = self.dns_server {
            b = b.dns_server(s);
        }
        if let Some(d) = self.dns_interval {
            b = b.dns_interval(d);
        }
        if self.no_beacons {
            b = b.beacons(false);
        }
        b
    }

    /// The lines `zmesh config` prints for these settings.
    pub(crate) fn describe(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(ep) = &self.gossip_bind {
            out.push(("gossip-bind", ep.clone()));
        }
        for ep in &self.gossip_connect {
            out.push(("gossip-connect", ep.clone()));
        }
        for p in &self.peer {
            out.push(("peer", p.to_string()));
        }
        if let Some(s) = self.dns_server {
            out.push(("dns-server", s.to_string()));
        }
        if let Some(d) = self.dns_interval {
            out.push(("dns-interval", format!("{d:?}")));
        }
        out.push(("beacons", (!self.no_beacons).to_string()));
        out
    }
}

/// `zmesh config`: the settings in effect, one `key = value` line each, with the origin of those
/// that did not come from a flag or the defaults.
pub(crate) fn show(cli: &Cli, node: &crate::NodeArgs, origins: &BTreeMap<&'static str, Origin>) {
    let mut lines: Vec<(&'static str, String)> = vec![
        ("name", node.name.clone().unwrap_or_default()),
        ("iface", cli.iface_display()),
        (
            "port",
            cli.port.unwrap_or(zmesh::DEFAULT_BEACON_PORT).to_string(),
        ),
        ("interval", node.interval.to_string()),
        ("evasive", node.evasive.to_string()),
        ("expired", node.expired.to_string()),
        (
            "tcp-port",
            node.tcp_port.map(|p| p.to_string()).unwrap_or_default(),
        ),
        ("advertise", node.advertise.clone().unwrap_or_default()),
    ];
    if let Some(g) = cli.multicast {
        lines.push(("multicast", g.to_string()));
        lines.push(("multicast-ttl", cli.multicast_ttl.to_string()));
    }
    lines.push(("broadcast", (!cli.no_broadcast).to_string()));
    lines.push(("ipv6", cli.ipv6.to_string()));
    lines.push(("same-host", (!cli.no_same_host).to_string()));
    for (k, v) in &cli.headers {
        lines.push(("header", format!("{k}={v}")));
    }
    for (k, v) in &cli.options {
        lines.push(("option", format!("{k}={v}")));
    }
    lines.extend(cli.discovery.describe());
    for (k, v) in lines {
        let flag = match k {
            "beacons" => "no-beacons",
            "broadcast" => "no-broadcast",
            "same-host" => "no-same-host",
            k => k,
        };
        match origins.get(flag) {
            Some(o) => println!("{k} = {v:?}  # {o}"),
            None => println!("{k} = {v:?}"),
        }
    }
}

/// Where a setting's value came from (for `zmesh config` and error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    Env(&'static str),
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Env(v) => write!(f, "environment {v}"),
            Origin::File(p) => write!(f, "config file {}", p.display()),
        }
    }
}

/// Parses the command line with environment and file values as defaults. `Err` is a message for
/// the user (exit status 2); clap's own errors exit through clap.
pub(crate) fn parse() -> Result<(Cli, BTreeMap<&'static str, Origin>), String> {
    parse_from(std::env::args_os().collect(), |k| std::env::var_os(k))
}

/// [`parse`] with the arguments and environment given (tests).
pub(crate) fn parse_from(
    argv: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<(Cli, BTreeMap<&'static str, Origin>), String> {
    let config_path = config_flag(&argv).or_else(|| env(CONFIG_ENV).map(PathBuf::from));
    let file = match &config_path {
        Some(p) => load_file(p)?,
        None => BTreeMap::new(),
    };
    let mut cmd = Cli::command();
    let mut origins = BTreeMap::new();
    for s in SETTINGS {
        let from_env = env(s.env).map(|v| (Origin::Env(s.env), v)).or_else(|| {
            (s.flag == "iface")
                .then(|| env(ZSYS_INTERFACE))
                .flatten()
                .map(|v| (Origin::Env(ZSYS_INTERFACE), v))
        });
        let (origin, values) = match from_env {
            Some((o, v)) => {
                let v = v.into_string().map_err(|_| format!("{o}: not UTF-8"))?;
                let values: Vec<String> = if s.multi {
                    v.split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(str::to_owned)
                        .collect()
                } else {
                    vec![v]
                };
                (o, values)
            }
            None => match file.get(s.flag) {
                Some(v) => (
                    Origin::File(config_path.clone().unwrap_or_default()),
                    v.clone(),
                ),
                None => continue,
            },
        };
        if values.len() > 1 && !s.multi {
            return Err(format!("{origin}: {} takes one value", s.flag));
        }
        let values = if is_switch(s.flag) {
            vec![switch_value(&values[0]).map_err(|e| format!("{origin}: {}: {e}", s.flag))?]
        } else {
            values
        };
        cmd = set_default(cmd, s.flag, &values, &origin)?;
        origins.insert(s.flag, origin);
    }
    let matches = cmd.try_get_matches_from(argv).unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    Ok((cli, origins))
}

/// `--config FILE` or `--config=FILE` among the arguments (before a `--`).
fn config_flag(argv: &[OsString]) -> Option<PathBuf> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_str()?;
        if a == "--" {
            return None;
        }
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    None
}

/// Reads the TOML file into flag name → values. Unknown keys and unusable values are errors.
fn load_file(path: &Path) -> Result<BTreeMap<&'static str, Vec<String>>, String> {
    let where_ = || format!("config file {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", where_()))?;
    let table: toml::Table = text.parse().map_err(|e| format!("{}: {e}", where_()))?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let norm = key.replace('_', "-");
        // Plural spellings, as the variables have them.
        let norm = match norm.as_str() {
            "headers" => "header".to_owned(),
            "options" => "option".to_owned(),
            "peers" => "peer".to_owned(),
            _ => norm,
        };
        let Some(s) = SETTINGS.iter().find(|s| s.flag == norm) else {
            let known: Vec<&str> = SETTINGS.iter().map(|s| s.flag).collect();
            return Err(format!(
                "{}: unknown key {key:?} (known: {})",
                where_(),
                known.join(", ")
            ));
        };
        let values = match value {
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| scalar(&v).ok_or(()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| format!("{}: {key}: arrays hold plain values", where_()))?,
            toml::Value::Table(t) if s.multi => t
                .into_iter()
                .map(|(k, v)| scalar(&v).map(|v| format!("{k}={v}")).ok_or(()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| format!("{}: {key}: table values must be plain", where_()))?,
            v => vec![scalar(&v).ok_or_else(|| format!("{}: {key}: unusable value", where_()))?],
        };
        if values.len() > 1 && !s.multi {
            return Err(format!("{}: {key} takes one value", where_()));
        }
        out.insert(s.flag, values);
    }
    Ok(out)
}

/// The settings that are switches (flags without a value).
fn is_switch(flag: &str) -> bool {
    matches!(
        flag,
        "no-beacons" | "no-broadcast" | "ipv6" | "no-same-host"
    )
}

/// A switch's value from the environment or the file: true/false, 1/0, yes/no, on/off.
fn switch_value(v: &str) -> Result<String, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok("true".into()),
        "0" | "false" | "no" | "off" | "" => Ok("false".into()),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Makes `values` the default of the argument `--flag`, wherever it is defined (the top level
/// for global flags, the node commands for node flags), after checking them with its parser.
fn set_default(
    mut cmd: clap::Command,
    flag: &str,
    values: &[String],
    origin: &Origin,
) -> Result<clap::Command, String> {
    // Checked against the top-level definition (or the first subcommand that has it), by
    // parsing `--flag value` with a command holding only that argument.
    let check = |c: &clap::Command| -> Result<bool, String> {
        let Some(arg) = c.get_arguments().find(|a| a.get_long() == Some(flag)) else {
            return Ok(false);
        };
        if !arg.get_action().takes_values() {
            return Ok(true); // a switch: its value was checked by `switch_value`
        }
        let probe = clap::Command::new("zmesh")
            .no_binary_name(true)
            .arg(arg.clone().global(false).required(false));
        for v in values {
            let argv = [format!("--{flag}"), v.clone()];
            probe.clone().try_get_matches_from(argv).map_err(|e| {
                let msg = e.to_string();
                let msg = msg.lines().next().unwrap_or_default().trim();
                let msg = msg.trim_start_matches("error: ");
                format!("{origin}: {flag} = {v:?}: {msg}")
            })?;
        }
        Ok(true)
    };
    let leaked: Vec<&'static str> = values
        .iter()
        .map(|v| &*Box::leak(v.clone().into_boxed_str()))
        .collect();
    let mut found = false;
    if check(&cmd)? {
        found = true;
        let id = id_of(&cmd, flag);
        cmd = cmd.mut_arg(id, |a| with_defaults(a, &leaked));
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| {
            s.get_arguments()
                .any(|a| a.get_long() == Some(flag) && !a.is_global_set())
        })
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in subs {
        let sub = cmd.find_subcommand(&name).expect("listed").clone();
        if !found {
            check(&sub)?;
            found = true;
        }
        let id = id_of(&sub, flag);
        let leaked = leaked.clone();
        cmd = cmd.mut_subcommand(name, move |s| s.mut_arg(id, |a| with_defaults(a, &leaked)));
    }
    Ok(cmd)
}

fn id_of(cmd: &clap::Command, flag: &str) -> String {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(flag))
        .map(|a| a.get_id().to_string())
        .expect("argument exists")
}

fn with_defaults(a: clap::Arg, values: &[&'static str]) -> clap::Arg {
    if values.len() == 1 {
        a.default_value(values[0])
    } else {
        a.default_values(values.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("zmesh")
            .chain(a.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn every_setting_names_a_real_flag() {
        let cmd = Cli::command();
        for s in SETTINGS {
            let top = cmd.get_arguments().any(|a| a.get_long() == Some(s.flag));
            let sub = cmd
                .get_subcommands()
                .any(|c| c.get_arguments().any(|a| a.get_long() == Some(s.flag)));
            assert!(top || sub, "--{} does not exist", s.flag);
            assert!(s.env.starts_with("ZMESH_"));
        }
    }

    #[test]
    fn every_setting_is_in_the_documented_table() {
        let doc = include_str!("../../../docs/configuration.md");
        for s in SETTINGS {
            assert!(
                doc.lines()
                    .any(|l| l.starts_with(&format!("| `--{}", s.flag))
                        && l.contains(&format!("`{}`", s.env))),
                "docs/configuration.md has no row for --{} / {}",
                s.flag,
                s.env
            );
        }
    }

    /// The compose file (not run here: no Docker engine) wires its nodes only by variables: every
    /// `ZMESH_*` name it uses must be one the CLI reads, or a node would silently ignore it.
    #[test]
    fn the_compose_file_uses_only_known_variables() {
        let compose = include_str!("../../../docker/compose.yml");
        let mut used = 0;
        for (i, _) in compose.match_indices("ZMESH_") {
            let name: String = compose[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            assert!(
                SETTINGS.iter().any(|s| s.env == name) || name == CONFIG_ENV,
                "docker/compose.yml uses {name}, which no setting reads"
            );
            used += 1;
        }
        assert!(used >= 4, "the compose file wires nodes by variables");
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let dir = std::env::temp_dir().join(format!("zmesh-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a.toml");
        std::fs::write(
            &f,
            "port = 7000\nname = \"from-file\"\npeers = [\"tcp://10.0.0.1:5671\"]\n[headers]\nX-A = \"1\"\n",
        )
        .unwrap();
        let cfg = f.to_str().unwrap();
        let env = |k: &str| match k {
            "ZMESH_PORT" => Some(OsString::from("7001")),
            _ => None,
        };
        let (cli, origins) =
            parse_from(args(&["--config", cfg, "listen", "--name", "flag"]), env).unwrap();
        assert_eq!(cli.port, Some(7001), "environment over file");
        assert_eq!(origins["port"], Origin::Env("ZMESH_PORT"));
        assert_eq!(cli.headers, vec![("X-A".to_string(), "1".to_string())]);
        assert_eq!(cli.discovery.peer.len(), 1);
        let crate::Command::Listen { node, .. } = &cli.command else {
            panic!()
        };
        assert_eq!(node.name.as_deref(), Some("flag"), "flag over file");
        let (cli, _) =
            parse_from(args(&["--config", cfg, "--port", "7002", "listen"]), env).unwrap();
        assert_eq!(cli.port, Some(7002), "flag over environment");
        let (cli, _) = parse_from(args(&["--config", cfg, "listen"]), |_| None).unwrap();
        let crate::Command::Listen { node, .. } = &cli.command else {
            panic!()
        };
        assert_eq!(node.name.as_deref(), Some("from-file"));
        assert_eq!(cli.port, Some(7000));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn zsys_interface_is_honoured_after_zmesh_iface() {
        let (cli, o) = parse_from(args(&["listen"]), |k| {
            (k == "ZSYS_INTERFACE").then(|| OsString::from("lo"))
        })
        .unwrap();
        assert_eq!(cli.iface_display(), "lo");
        assert_eq!(o["iface"], Origin::Env("ZSYS_INTERFACE"));
    }

    #[test]
    fn multi_values_from_the_environment_split_at_commas() {
        let (cli, _) = parse_from(args(&["listen"]), |k| match k {
            "ZMESH_PEERS" => Some("tcp://10.0.0.1:1, srv:mesh.test".into()),
            "ZMESH_GOSSIP_CONNECT" => Some("tcp://10.0.0.2:2".into()),
            "ZMESH_NO_BEACONS" => Some("true".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cli.discovery.peer.len(), 2);
        assert_eq!(cli.discovery.gossip_connect, vec!["tcp://10.0.0.2:2"]);
        assert!(cli.discovery.no_beacons);
    }

    #[test]
    fn beacon_settings_from_the_environment_and_the_file() {
        let (cli, o) = parse_from(args(&["listen"]), |k| match k {
            "ZMESH_IFACE" => Some("lo, eth0".into()),
            "ZMESH_MULTICAST" => Some("239.255.90.82".into()),
            "ZMESH_IPV6" => Some("yes".into()),
            "ZMESH_NO_BROADCAST" => Some("1".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cli.iface_display(), "lo,eth0");
        assert_eq!(cli.multicast, Some("239.255.90.82".parse().unwrap()));
        assert!(cli.ipv6 && cli.no_broadcast);
        assert_eq!(o["ipv6"], Origin::Env("ZMESH_IPV6"));
        // A flag beats the environment.
        let (cli, _) = parse_from(args(&["--iface", "all", "listen"]), |k| {
            (k == "ZMESH_IFACE").then(|| OsString::from("lo"))
        })
        .unwrap();
        assert_eq!(cli.iface_display(), "all");
        let e = parse_from(args(&["listen"]), |k| {
            (k == "ZMESH_MULTICAST").then(|| OsString::from("not-a-group"))
        })
        .unwrap_err();
        assert!(e.contains("ZMESH_MULTICAST"), "{e}");
        let dir = std::env::temp_dir().join(format!("zmesh-config-bc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "iface = [\"lo\", \"10.0.0.0/8\"]\nipv6 = true\nmulticast = \"239.1.2.3\"\n",
        )
        .unwrap();
        let (cli, _) =
            parse_from(args(&["--config", f.to_str().unwrap(), "listen"]), |_| None).unwrap();
        assert_eq!(cli.iface_display(), "lo,10.0.0.0/8");
        assert!(cli.ipv6);
        assert_eq!(cli.multicast, Some("239.1.2.3".parse().unwrap()));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_values_name_their_origin() {
        let e = parse_from(args(&["listen"]), |k| {
            (k == "ZMESH_PORT").then(|| OsString::from("0"))
        })
        .unwrap_err();
        assert!(e.contains("ZMESH_PORT") && e.contains("port"), "{e}");
        let e = parse_from(args(&["listen"]), |k| {
            (k == "ZMESH_PEERS").then(|| OsString::from("udp://x"))
        })
        .unwrap_err();
        assert!(e.contains("ZMESH_PEERS"), "{e}");
        let dir = std::env::temp_dir().join(format!("zmesh-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("b.toml");
        std::fs::write(&f, "colour = \"red\"\n").unwrap();
        let e =
            parse_from(args(&["--config", f.to_str().unwrap(), "listen"]), |_| None).unwrap_err();
        assert!(e.contains("unknown key \"colour\""), "{e}");
        std::fs::write(&f, "interval = 0\n").unwrap();
        let e =
            parse_from(args(&["--config", f.to_str().unwrap(), "listen"]), |_| None).unwrap_err();
        assert!(e.contains("config file") && e.contains("interval"), "{e}");
        let e = parse_from(args(&["--config", "/nonexistent/z.toml", "listen"]), |_| {
            None
        })
        .unwrap_err();
        assert!(e.contains("/nonexistent/z.toml"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
