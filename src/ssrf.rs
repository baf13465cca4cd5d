//! The SSRF policy (README, "Security"): which destinations the hub may ever send a request to.
//!
//! This module classifies URLs and IP addresses; it makes no requests itself. Registration
//! checks a webhook URL here (resolving host names once), and the outbound HTTP client checks
//! every resolved address again at connect time, so a name that later points somewhere refused
//! is still caught.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;
use url::{Host, Url};

use crate::config::SecuritySettings;

/// Why a destination is refused. The text is shown to the user who registered the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("is not a valid URL: {0}")]
    Malformed(String),
    #[error("uses scheme {0:?}; only http and https are allowed")]
    Scheme(String),
    #[error("uses http, but this hub requires https (security.https_only)")]
    HttpsRequired,
    #[error("has no host")]
    NoHost,
    #[error("uses port 0, which no server listens on")]
    PortZero,
    #[error("must not carry user name or password")]
    Credentials,
    #[error(
        "points to {addr}, a {class} address, which is refused (allow it with security.allowed_subnets or security.allow_private_networks)"
    )]
    Address { addr: IpAddr, class: &'static str },
    #[error("has host {host:?}, which could not be resolved: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// The policy in force: refused classes, minus what the operator opened.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow_private_networks: bool,
    allowed_subnets: Vec<IpNet>,
    https_only: bool,
}

impl Policy {
    pub fn from_settings(settings: &SecuritySettings) -> Policy {
        Policy {
            allow_private_networks: settings.allow_private_networks,
            allowed_subnets: settings.allowed_subnets.clone(),
            https_only: settings.https_only,
        }
    }

    /// The same policy, with `addr` allowed as well (the operator-configured upstream agent).
    pub fn allowing(&self, addr: IpAddr) -> Policy {
        let mut policy = self.clone();
        policy.allowed_subnets.push(IpNet::from(addr));
        policy
    }

    /// Checks one address; `Ok` means a request may connect to it.
    pub fn check_ip(&self, addr: IpAddr) -> Result<(), Refusal> {
        let Some(class) = refused_class(addr) else {
            return Ok(());
        };
        if self.allow_private_networks || self.is_allowed(addr) {
            return Ok(());
        }
        Err(Refusal::Address { addr, class })
    }

    fn is_allowed(&self, addr: IpAddr) -> bool {
        let embedded = embedded_ipv4(addr).map(IpAddr::V4);
        self.allowed_subnets
            .iter()
            .any(|net| net.contains(&addr) || embedded.is_some_and(|v4| net.contains(&v4)))
    }

    /// Checks everything that can be checked without DNS: scheme, credentials, and the host
    /// when it is an IP literal (the URL parser normalises decimal, hex, octal and short forms).
    pub fn check_url_syntax(&self, raw: &str) -> Result<Url, Refusal> {
        let url = Url::parse(raw).map_err(|e| Refusal::Malformed(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.https_only => return Err(Refusal::HttpsRequired),
            "http" => {}
            other => return Err(Refusal::Scheme(other.to_string())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Credentials);
        }
        if url.port() == Some(0) {
            return Err(Refusal::PortZero);
        }
        match url.host() {
            None => return Err(Refusal::NoHost),
            Some(Host::Ipv4(v4)) => self.check_ip(IpAddr::V4(v4))?,
            Some(Host::Ipv6(v6)) => self.check_ip(IpAddr::V6(v6))?,
            Some(Host::Domain(_)) => {}
        }
        Ok(url)
    }

    /// Full check at registration: syntax, then every address the host name resolves to.
    ///
    /// A name that does not resolve right now is accepted: the connect-time check is what
    /// protects (every delivery resolves again and connects only to allowed addresses), and
    /// refusing it would make a DNS outage block every registration, and a webhook host whose
    /// name is not published yet impossible to register. A name that resolves to a refused
    /// address is refused here already, so the user hears of it at once.
    pub async fn check_url(&self, raw: &str) -> Result<Url, Refusal> {
        let url = self.check_url_syntax(raw)?;
        let Some(Host::Domain(domain)) = url.host() else {
            return Ok(url);
        };
        if self.allow_private_networks {
            // Every address class is open: a lookup could refuse nothing.
            return Ok(url);
        }
        let host = domain.trim_end_matches('.').to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let lookup = tokio::net::lookup_host((host.clone(), port));
        match tokio::time::timeout(Duration::from_secs(5), lookup).await {
            Ok(Ok(addrs)) => {
                for addr in addrs {
                    self.check_ip(addr.ip())?;
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(host, error = %e, "webhook host does not resolve now; checked again at each connection");
            }
            Err(_) => {
                tracing::debug!(
                    host,
                    "webhook host lookup timed out; checked again at each connection"
                );
            }
        }
        Ok(url)
    }
}

/// The IPv4 address carried inside an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), if any.
fn embedded_ipv4(addr: IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(_) => None,
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

/// The refused class an address belongs to, or `None` for a public unicast address.
/// IPv4-mapped addresses are judged by the IPv4 address they carry.
pub fn refused_class(addr: IpAddr) -> Option<&'static str> {
    match (addr, embedded_ipv4(addr)) {
        (_, Some(v4)) => refused_v4(v4),
        (IpAddr::V4(v4), None) => refused_v4(v4),
        (IpAddr::V6(v6), None) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    let class = match o {
        [0, ..] => "unspecified (0.0.0.0/8)",
        [10, ..] => "private (10.0.0.0/8)",
        [100, b, ..] if (64..128).contains(&b) => "carrier-grade NAT (100.64.0.0/10)",
        [127, ..] => "loopback",
        [169, 254, ..] => "link-local (incl. cloud metadata)",
        [172, b, ..] if (16..32).contains(&b) => "private (172.16.0.0/12)",
        [192, 0, 0, _] => "IETF protocol assignment (192.0.0.0/24)",
        [192, 0, 2, _] => "documentation",
        [192, 88, 99, _] => "6to4 relay anycast",
        [192, 168, ..] => "private (192.168.0.0/16)",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking (198.18.0.0/15)",
        [198, 51, 100, _] => "documentation",
        [203, 0, 113, _] => "documentation",
        [255, 255, 255, 255] => "broadcast",
        [a, ..] if (224..240).contains(&a) => "multicast",
        [a, ..] if a >= 240 => "reserved (240.0.0.0/4)",
        _ => return None,
    };
    Some(class)
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let class = if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if s[0] == 0x64 && s[1] == 0xff9b {
        "NAT64 (64:ff9b::/96, 64:ff9b:1::/48)"
    } else if s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
        "discard-only (100::/64)"
    } else if s[0] == 0x2001 && s[1] < 0x200 {
        "IETF protocol assignment (2001::/23, incl. Teredo)"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation"
    } else if s[0] == 0x2002 {
        "6to4 (2002::/16)"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "unique local (fc00::/7)"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "link-local (fe80::/10)"
    } else if (s[0] & 0xffc0) == 0xfec0 {
        "site-local (fec0::/10)"
    } else if (s[0] & 0xff00) == 0xff00 {
        "multicast"
    } else if s[..6] == [0, 0, 0, 0, 0, 0] {
        "IPv4-compatible (::/96)"
    } else if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        // Some stacks route these to the IPv4 address in the last 32 bits: judged not worth
        // the risk for a webhook, whichever IPv4 address that is.
        "IPv4-translated (::ffff:0:0:0/96, RFC 2765)"
    } else {
        return None;
    };
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> Policy {
        Policy::default()
    }

    #[test]
    fn ip_literals_in_every_spelling_are_refused() {
        let refused = [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://017700000001/",
            "http://127.0.0.1./",
            "http://0/",
            "http://0.0.0.0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://192.0.2.1/",
            "http://198.18.0.1/",
            "http://198.51.100.7/",
            "http://203.0.113.9/",
            "http://224.0.0.1/",
            "http://240.0.0.1/",
            "http://255.255.255.255/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:0:7f00:1]/",
            "http://[::ffff:0:808:808]/",
            "http://[0:0:0:0:ffff:0:a9fe:a9fe]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b:1::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[2001:db8::1]/",
            "http://[2001::1]/",
        ];
        for url in refused {
            let result = strict().check_url_syntax(url);
            assert!(
                matches!(result, Err(Refusal::Address { .. })),
                "{url} should be refused, got {result:?}"
            );
        }
    }

    #[test]
    fn port_zero_is_refused_in_every_spelling() {
        for url in [
            "http://8.8.8.8:0/",
            "http://example.com:00/hook",
            "https://[2606:4700::1]:0/",
        ] {
            assert_eq!(
                strict().check_url_syntax(url),
                Err(Refusal::PortZero),
                "{url}"
            );
        }
    }

    #[test]
    fn public_addresses_pass() {
        for url in [
            "http://93.184.216.34/hook",
            "https://8.8.8.8/",
            "http://[2606:4700::1111]/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[::ffff:8.8.8.8]/",
        ] {
            assert!(strict().check_url_syntax(url).is_ok(), "{url} should pass");
        }
    }

    #[test]
    fn scheme_credentials_and_https_only_are_enforced() {
        assert!(matches!(
            strict().check_url_syntax("ftp://8.8.8.8/"),
            Err(Refusal::Scheme(_))
        ));
        assert!(matches!(
            strict().check_url_syntax("file:///etc/passwd"),
            Err(Refusal::Scheme(_))
        ));
        assert!(matches!(
            strict().check_url_syntax("not a url"),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            strict().check_url_syntax("http://user:pw@8.8.8.8/"),
            Err(Refusal::Credentials)
        ));
        let https_only = Policy {
            https_only: true,
            ..Policy::default()
        };
        assert!(matches!(
            https_only.check_url_syntax("http://8.8.8.8/"),
            Err(Refusal::HttpsRequired)
        ));
        assert!(https_only.check_url_syntax("https://8.8.8.8/").is_ok());
    }

    #[test]
    fn allowed_subnets_open_exactly_their_range_including_mapped_forms() {
        let policy = Policy {
            allowed_subnets: vec!["127.0.0.2/32".parse().unwrap()],
            ..Policy::default()
        };
        assert!(policy.check_url_syntax("http://127.0.0.2:9000/").is_ok());
        assert!(
            policy
                .check_url_syntax("http://[::ffff:127.0.0.2]/")
                .is_ok()
        );
        assert!(policy.check_url_syntax("http://127.0.0.3/").is_err());
        let open = Policy {
            allow_private_networks: true,
            ..Policy::default()
        };
        assert!(open.check_url_syntax("http://10.0.0.1/").is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let err = strict().check_url("http://localhost:9/").await.unwrap_err();
        assert!(matches!(err, Refusal::Address { .. }), "{err:?}");
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
