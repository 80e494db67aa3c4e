//! Target URLs: `udp://HOST:PORT`, `tcp://HOST:PORT`, `tls://HOST:PORT`.
//!
//! The canonical text form ([`TargetUrl`]'s `Display`) labels the target's
//! metrics and seeds its rendezvous hash, so it is normalised: lower-case
//! scheme and host, IPv6 literals in brackets. A URL carries no user
//! information, path, query or fragment (nothing secret can reach a label).

use std::fmt;
use std::str::FromStr;

/// The transport of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// One HEP message per datagram.
    Udp,
    /// HEP3 messages back to back on a TCP stream.
    Tcp,
    /// HEP3 messages back to back on a TLS stream (rustls).
    Tls,
}

impl Scheme {
    /// `udp`, `tcp` or `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Udp => "udp",
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
        }
    }

    /// True for the stream transports (which need HEP3 framing).
    pub fn is_stream(self) -> bool {
        !matches!(self, Scheme::Udp)
    }
}

/// A parsed target URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetUrl {
    /// Transport.
    pub scheme: Scheme,
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// Port (1-65535).
    pub port: u16,
}

impl TargetUrl {
    /// `HOST:PORT` (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())
    }
}

/// Why a target URL was refused (the message says what to write instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

const FORMS: &str = "udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT";

impl FromStr for TargetUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        if let Some((_, after_scheme)) = s.split_once("://") {
            if after_scheme.contains('@') {
                // The URL is not echoed: what precedes '@' may be a password.
                return Err(UrlError(
                    "user information (user@ or user:password@) is not allowed in a target URL (the URL labels metrics); use set_auth_key for a HEP auth key".into(),
                ));
            }
        }
        let err = |why: &str| UrlError(format!("{s:?}: {why}"));
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| err(&format!("not a target URL: write {FORMS}")))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "udp" => Scheme::Udp,
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            _ => return Err(err(&format!("unknown scheme {scheme:?}: write {FORMS}"))),
        };
        if rest.contains(['/', '?', '#']) {
            return Err(err(&format!(
                "a target URL has no path, query or fragment: write {FORMS}"
            )));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| err("unclosed '[' in an IPv6 address"))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err(&format!("{addr:?} is not an IPv6 address")));
            }
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| err("missing :PORT after the address"))?;
            (addr.to_string(), port)
        } else {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| err("missing :PORT (HEP has no default port)"))?;
            if host.contains(':') {
                return Err(err(
                    "write an IPv6 address in brackets, e.g. udp://[2001:db8::5]:9060",
                ));
            }
            (host.to_string(), port)
        };
        if host.is_empty() {
            return Err(err("the host is empty"));
        }
        if host
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
        {
            return Err(err(&format!("{host:?} is not a host name or IP address")));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| err(&format!("{port:?} is not a port (1-65535)")))?;
        Ok(TargetUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let u: TargetUrl = "udp://10.0.0.5:9060".parse().unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Udp, "10.0.0.5", 9060)
        );
        let u: TargetUrl = "TCP://Homer-B.example:9061".parse().unwrap();
        assert_eq!(u.to_string(), "tcp://homer-b.example:9061");
        let u: TargetUrl = "tls://[2001:DB8::5]:9062".parse().unwrap();
        assert_eq!(u.host, "2001:db8::5");
        assert_eq!(u.to_string(), "tls://[2001:db8::5]:9062");
        assert!(u.scheme.is_stream());
    }

    #[test]
    fn refuses_bad_urls_with_what_to_do() {
        let bad = [
            ("10.0.0.5:9060", "not a target URL"),
            ("http://a:1", "unknown scheme"),
            ("udp://a", "missing :PORT"),
            ("udp://a:0", "not a port"),
            ("udp://a:70000", "not a port"),
            ("udp://:9060", "host is empty"),
            ("udp://2001:db8::5:9060", "in brackets"),
            ("udp://[2001:db8::5:9060", "unclosed"),
            ("udp://[nope]:9060", "not an IPv6"),
            ("tcp://user:pw@host:1", "user information"),
            ("tcp://host:1/path", "no path"),
            ("tcp://ho st:1", "not a host name"),
        ];
        for (url, want) in bad {
            let e = url.parse::<TargetUrl>().unwrap_err().to_string();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("pw"), "a password must not be echoed: {e}");
        }
    }
}
