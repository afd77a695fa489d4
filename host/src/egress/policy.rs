//! The egress policy: the only place that decides where the host may connect.
//!
//! By default a provider call may go to public addresses only. Refused: loopback, unspecified,
//! private (10/8, 172.16/12, 192.168/16), link-local (169.254/16, fe80::/10), carrier-grade NAT
//! (100.64/10), unique-local (fc00::/7), multicast and broadcast — and IPv4 addresses written as
//! IPv6 (`::ffff:127.0.0.1`) are judged as the IPv4 address they are. A name is judged by every
//! address it resolves to, inside the HTTP client's resolver, so the address checked is the
//! address connected to (no second lookup a rebinding DNS server could answer differently).
//!
//! Operators open exceptions with `PODS_EGRESS_ALLOW`: comma-separated CIDRs (`10.0.0.0/8`), IP
//! addresses, `ip:port`, host names or `host:port` — e.g. `127.0.0.1:11434` for an Ollama on the
//! same machine. An exception naming a port opens that port only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;

/// The environment variable operators open exceptions with.
pub const ALLOW_VAR: &str = "PODS_EGRESS_ALLOW";

/// Where calls may go; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allow: Arc<Vec<Rule>>,
}

/// One exception.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// Every address in the network, on any port (a bare IP is a /32 or /128).
    Net(IpNet),
    /// One address and port.
    Socket(SocketAddr),
    /// A host name (lowercase), on any port, whatever it resolves to.
    Host(String),
    /// A host name and one port.
    HostPort(String, u16),
}

/// Why a destination was refused. Its message names the rule, never anything the refused host
/// said (it was never asked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused to connect to {host}: {what} is a {range} address; an operator can allow it with {ALLOW_VAR}"
)]
pub struct Refused {
    pub host: String,
    /// What was refused: the address itself, or "it" for a name (what a name resolves to inside
    /// the operator's network is not for the caller to learn).
    what: String,
    range: &'static str,
}

impl EgressPolicy {
    /// Public destinations only.
    pub fn public_only() -> Self {
        EgressPolicy::default()
    }

    /// Public destinations, plus the exceptions in `spec` (the `PODS_EGRESS_ALLOW` syntax).
    pub fn with_exceptions(spec: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            rules.push(parse_rule(item).map_err(|why| format!("{ALLOW_VAR}: {item:?} {why}"))?);
        }
        Ok(EgressPolicy {
            allow: Arc::new(rules),
        })
    }

    /// Whether a connection to `ip:port`, reached as `host`, may be made.
    pub fn check(&self, host: &str, ip: IpAddr, port: u16) -> Result<(), Refused> {
        let ip = canonical(ip);
        let Some(range) = blocked_range(ip) else {
            return Ok(());
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let allowed = self.allow.iter().any(|rule| match rule {
            Rule::Net(net) => net.contains(&ip),
            Rule::Socket(addr) => canonical(addr.ip()) == ip && addr.port() == port,
            Rule::Host(name) => *name == host,
            Rule::HostPort(name, p) => *name == host && *p == port,
        });
        if allowed {
            return Ok(());
        }
        let literal = IpAddr::from_str(host.trim_matches(['[', ']'])).is_ok();
        Err(Refused {
            what: if literal { ip.to_string() } else { "it".into() },
            host,
            range,
        })
    }
}

impl EgressPolicy {
    /// Judges a base URL when it is configured: its address, or every address its name resolves
    /// to now (within a few seconds). A name that does not resolve yet passes — every call is
    /// judged again when it connects.
    pub async fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        let port = url.port_or_known_default().unwrap_or(443);
        let host = url.host_str().unwrap_or_default();
        match url.host() {
            Some(url::Host::Ipv4(ip)) => return self.check(host, IpAddr::V4(ip), port),
            Some(url::Host::Ipv6(ip)) => return self.check(host, IpAddr::V6(ip), port),
            _ => {}
        }
        let lookup = tokio::net::lookup_host((host, port));
        let Ok(Ok(addrs)) = tokio::time::timeout(std::time::Duration::from_secs(3), lookup).await
        else {
            return Ok(());
        };
        let mut refused = None;
        for addr in addrs {
            match self.check(host, addr.ip(), port) {
                Ok(()) => return Ok(()),
                Err(why) => refused = Some(why),
            }
        }
        refused.map_or(Ok(()), Err)
    }
}

fn parse_rule(item: &str) -> Result<Rule, &'static str> {
    if let Ok(net) = IpNet::from_str(item) {
        return Ok(Rule::Net(net));
    }
    if let Ok(ip) = IpAddr::from_str(item.trim_matches(['[', ']'])) {
        return Ok(Rule::Net(IpNet::from(ip)));
    }
    if let Ok(addr) = SocketAddr::from_str(item) {
        return Ok(Rule::Socket(addr));
    }
    let (name, port) = match item.rsplit_once(':') {
        Some((name, port)) => (
            name,
            Some(
                port.parse::<u16>()
                    .map_err(|_| "has a port that is not a number")?,
            ),
        ),
        None => (item, None),
    };
    let valid_name = !name.is_empty()
        && name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !valid_name {
        return Err("is not a CIDR, an address, a host name, or one of them with a :port");
    }
    let name = name.to_ascii_lowercase();
    Ok(match port {
        Some(port) => Rule::HostPort(name, port),
        None => Rule::Host(name),
    })
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The name of the refused range `ip` is in, if any.
fn blocked_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if a == 0 {
        "unspecified"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 100 && (64..128).contains(&b) {
        "carrier-grade NAT"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.is_broadcast() {
        "broadcast"
    } else {
        return None;
    })
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if first & 0xfe00 == 0xfc00 {
        "unique-local"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else {
        return None;
    })
}

/// The HTTP client's resolver: resolves a name and keeps only the addresses the policy allows
/// for `port` (one client per port, see `Egress`), so what is checked is what is connected to.
pub(super) struct CheckedResolver {
    pub policy: EgressPolicy,
    pub port: u16,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (policy, port) = (self.policy.clone(), self.port);
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match policy.check(&host, addr.ip(), port) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(why)) => Err(Box::new(why) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The refusal somewhere in an error's chain of causes (the resolver's, wrapped by the client).
pub(super) fn refusal_in(error: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused.clone());
        }
        cause = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        IpAddr::from_str(s).expect("an address")
    }

    #[test]
    fn every_internal_range_is_refused_by_default_and_public_addresses_pass() {
        let policy = EgressPolicy::public_only();
        for (addr, range) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.254", "carrier-grade NAT"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique-local"),
            ("fc00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
        ] {
            let refused = policy
                .check(addr, ip(addr), 443)
                .expect_err(&format!("{addr} is refused"));
            assert_eq!(refused.range, range, "{addr}");
            assert!(refused.to_string().contains(ALLOW_VAR));
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(policy.check(public, ip(public), 443).is_ok(), "{public}");
        }
    }

    #[test]
    fn a_refused_name_does_not_say_what_it_resolved_to() {
        let refused = EgressPolicy::public_only()
            .check("internal.corp", ip("10.9.8.7"), 443)
            .expect_err("private");
        let message = refused.to_string();
        assert!(!message.contains("10.9.8.7"), "{message}");
        assert!(
            message.contains("internal.corp") && message.contains("private"),
            "{message}"
        );
    }

    #[test]
    fn exceptions_open_a_network_an_address_a_port_or_a_name() {
        let policy = EgressPolicy::with_exceptions(
            "10.0.0.0/8, 127.0.0.1:11434, [::1]:8000, localhost:9000, vllm.internal, 192.168.1.5",
        )
        .expect("valid");
        assert!(policy.check("10.2.3.4", ip("10.2.3.4"), 80).is_ok());
        assert!(policy.check("127.0.0.1", ip("127.0.0.1"), 11434).is_ok());
        assert!(
            policy.check("127.0.0.1", ip("127.0.0.1"), 6379).is_err(),
            "another port"
        );
        assert!(policy.check("::1", ip("::1"), 8000).is_ok());
        assert!(policy.check("::1", ip("::1"), 8001).is_err());
        assert!(policy.check("localhost", ip("127.0.0.1"), 9000).is_ok());
        assert!(policy.check("localhost", ip("127.0.0.1"), 9001).is_err());
        assert!(policy.check("vllm.internal", ip("10.0.0.9"), 1).is_ok());
        assert!(
            policy
                .check("VLLM.Internal.", ip("172.20.0.9"), 8080)
                .is_ok()
        );
        assert!(policy.check("192.168.1.5", ip("192.168.1.5"), 22).is_ok());
        assert!(policy.check("192.168.1.6", ip("192.168.1.6"), 22).is_err());
        assert!(
            policy
                .check("::ffff:127.0.0.1", ip("::ffff:127.0.0.1"), 11434)
                .is_ok()
        );
    }

    #[test]
    fn a_malformed_exception_is_refused_by_name() {
        for bad in ["10.0.0.0/33", "host:port", "under_score", "a..b", ":80"] {
            let why = EgressPolicy::with_exceptions(bad).expect_err(bad);
            assert!(why.contains(ALLOW_VAR) && why.contains(bad), "{why}");
        }
        assert!(
            EgressPolicy::with_exceptions(" , ").is_ok(),
            "empty items are skipped"
        );
    }
}
