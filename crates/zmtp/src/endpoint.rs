//! Endpoint strings: `tcp://1.2.3.4:5`, `tcp://1.2.3.4:*`, `tcp://[::1]:5`, `tcp://host:5`, `ipc:///path`.
//!
//! Parsing is pure; resolution of host names happens in [`Endpoint::resolve`] (async, for connect/bind).

use crate::error::EndpointError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed endpoint. `Display` gives the canonical string (IPv6 hosts in brackets).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// TCP: host (IP literal, `*` for any, or a name) and port (`None` = `*`, ephemeral on bind).
    Tcp {
        /// Host without brackets, e.g. `127.0.0.1`, `::1`, `localhost`, `*`.
        host: String,
        /// Port; `None` means `*` (let the kernel choose on bind).
        port: Option<u16>,
    },
    /// Unix-domain socket at this path.
    Ipc(PathBuf),
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("ipc://") {
            if path.is_empty() {
                return Err(EndpointError::EmptyPath);
            }
            return Ok(Endpoint::Ipc(PathBuf::from(path)));
        }
        let Some(rest) = s.strip_prefix("tcp://") else {
            return Err(EndpointError::UnknownScheme(s.to_string()));
        };
        let (host, port) = if let Some(after) = rest.strip_prefix('[') {
            // [ipv6]:port
            let close = after
                .find(']')
                .ok_or_else(|| EndpointError::InvalidHost(s.to_string()))?;
            let host = &after[..close];
            let tail = &after[close + 1..];
            let port = tail
                .strip_prefix(':')
                .ok_or_else(|| EndpointError::MissingPort(s.to_string()))?;
            (host, port)
        } else {
            let colon = rest
                .rfind(':')
                .ok_or_else(|| EndpointError::MissingPort(s.to_string()))?;
            let host = &rest[..colon];
            if host.contains(':') {
                // An unbracketed IPv6 literal is ambiguous.
                return Err(EndpointError::InvalidHost(s.to_string()));
            }
            (host, &rest[colon + 1..])
        };
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(EndpointError::InvalidHost(s.to_string()));
        }
        let port = if port == "*" {
            None
        } else {
            Some(
                port.parse::<u16>()
                    .map_err(|_| EndpointError::InvalidPort(port.to_string()))?,
            )
        };
        Ok(Endpoint::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ipc(p) => write!(f, "ipc://{}", p.display()),
            Endpoint::Tcp { host, port } => {
                if host.contains(':') {
                    write!(f, "tcp://[{host}]:")?;
                } else {
                    write!(f, "tcp://{host}:")?;
                }
                match port {
                    Some(p) => write!(f, "{p}"),
                    None => f.write_str("*"),
                }
            }
        }
    }
}

impl Endpoint {
    /// Resolve a TCP endpoint to socket addresses (`*` host = all IPv4 interfaces, `*` port = 0).
    /// IP literals are not looked up. Returns an error for ipc endpoints.
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, EndpointError> {
        let Endpoint::Tcp { host, port } = self else {
            return Err(EndpointError::UnknownScheme(self.to_string()));
        };
        let port = port.unwrap_or(0);
        if host == "*" {
            return Ok(vec![SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port)]);
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        // A link-local IPv6 literal with a numeric scope (`fe80::1%3`); a named scope
        // (`fe80::1%eth0`) is left to the resolver, which knows interface names.
        if let Ok(a) = format!("[{host}]:{port}").parse::<SocketAddr>() {
            return Ok(vec![a]);
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| EndpointError::Unresolvable(host.clone()))?
            .collect();
        if addrs.is_empty() {
            return Err(EndpointError::Unresolvable(host.clone()));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link-local IPv6 endpoint keeps its scope (the interface index) through parse, display
    /// and resolve.
    #[tokio::test]
    async fn scoped_ipv6_literals() {
        let e: Endpoint = "tcp://[fe80::1%3]:5670".parse().unwrap();
        assert_eq!(e.to_string(), "tcp://[fe80::1%3]:5670");
        let a = e.resolve().await.unwrap();
        assert_eq!(
            a,
            vec![SocketAddr::V6(std::net::SocketAddrV6::new(
                "fe80::1".parse().unwrap(),
                5670,
                0,
                3
            ))]
        );
    }

    #[test]
    fn parse_and_display() {
        for s in [
            "tcp://127.0.0.1:5670",
            "tcp://127.0.0.1:*",
            "tcp://[::1]:9",
            "tcp://localhost:80",
            "ipc:///tmp/x.sock",
        ] {
            let e: Endpoint = s.parse().unwrap();
            assert_eq!(e.to_string(), s);
        }
        assert_eq!(
            "tcp://[::1]:*".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp {
                host: "::1".into(),
                port: None
            }
        );
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(
            "udp://1.2.3.4:5".parse::<Endpoint>(),
            Err(EndpointError::UnknownScheme(_))
        ));
        assert!(matches!(
            "tcp://1.2.3.4".parse::<Endpoint>(),
            Err(EndpointError::MissingPort(_))
        ));
        assert!(matches!(
            "tcp://1.2.3.4:70000".parse::<Endpoint>(),
            Err(EndpointError::InvalidPort(_))
        ));
        assert!(matches!(
            "tcp://[::1:5".parse::<Endpoint>(),
            Err(EndpointError::InvalidHost(_))
        ));
        assert!(matches!(
            "tcp://::1:5".parse::<Endpoint>(),
            Err(EndpointError::InvalidHost(_))
        ));
        assert!(matches!(
            "ipc://".parse::<Endpoint>(),
            Err(EndpointError::EmptyPath)
        ));
    }
}
