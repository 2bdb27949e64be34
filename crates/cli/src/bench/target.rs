//! The URLs the generator talks to (loopback only) and the source addresses it connects from.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::error::BenchError;

/// A parsed `http://` URL on the loopback network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The `Host` header: the URL's authority as written.
    pub host: String,
    /// The request target: path and query.
    pub path: String,
}

impl Target {
    /// Parses `url`, refusing anything but `http://` to 127.0.0.0/8 or `localhost`: the
    /// generator opens thousands of connections and must never aim them at another machine.
    pub fn parse(url: &str) -> Result<Self, BenchError> {
        let bad = |why: &str| BenchError::BadArgument(format!("{url}: {why}"));
        let uri: http::Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => {
                return Err(bad(
                    "only http:// URLs (the generator speaks plain HTTP/1.1)",
                ));
            }
            None => return Err(bad("not an absolute http:// URL")),
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let ip = if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else {
            match host.parse::<Ipv4Addr>() {
                Ok(ip) if ip.is_loopback() => ip,
                _ => {
                    return Err(BenchError::NotLoopback {
                        url: url.to_owned(),
                    });
                }
            }
        };
        let port = uri.port_u16().unwrap_or(80);
        let authority = uri.authority().map_or(host, |authority| authority.as_str());
        Ok(Self {
            addr: SocketAddr::V4(SocketAddrV4::new(ip, port)),
            host: authority.to_owned(),
            path: uri
                .path_and_query()
                .map_or("/", |path| path.as_str())
                .to_owned(),
        })
    }
}

/// How many distinct source addresses [`source_ip`] can give: 127.0.0.2 up to 127.0.255.254.
pub const MAX_SOURCE_IPS: u32 = 256 * 253;

/// The source address of client `index` when clients are spread over `count` addresses:
/// 127.0.0.2, 127.0.0.3, ... 127.0.0.254, 127.0.1.2, ... Each address has its own ~28,000
/// ephemeral ports, so the number of clients is not limited by ports. (.0, .1 and .255 of each
/// /24 are skipped, to stay clear of addresses that look special.)
pub fn source_ip(index: usize, count: u32) -> Ipv4Addr {
    let slot = (index as u64 % u64::from(count.clamp(1, MAX_SOURCE_IPS))) as u32;
    let third = (slot / 253) as u8;
    let fourth = (slot % 253) as u8 + 2;
    Ipv4Addr::new(127, 0, third, fourth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_parse() {
        let target = Target::parse("http://127.0.0.1:8080/events?uid=1").unwrap();
        assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(target.host, "127.0.0.1:8080");
        assert_eq!(target.path, "/events?uid=1");
        let target = Target::parse("http://localhost/").unwrap();
        assert_eq!(target.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!(target.host, "localhost");
        let target = Target::parse("http://127.9.8.7:1").unwrap();
        assert_eq!(target.addr, "127.9.8.7:1".parse().unwrap());
        assert_eq!(target.path, "/");
    }

    #[test]
    fn other_hosts_and_schemes_are_refused() {
        for url in [
            "http://10.0.0.1/events",
            "http://example.com/events",
            "http://128.0.0.1/",
            "http://[::1]:8080/",
        ] {
            assert!(
                matches!(Target::parse(url), Err(BenchError::NotLoopback { .. })),
                "{url}"
            );
        }
        for url in [
            "https://127.0.0.1/",
            "127.0.0.1:8080/events",
            "not a url",
            "/events",
        ] {
            assert!(
                matches!(Target::parse(url), Err(BenchError::BadArgument(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn source_addresses_spread_and_wrap() {
        assert_eq!(source_ip(0, 250), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_ip(249, 250), Ipv4Addr::new(127, 0, 0, 251));
        assert_eq!(source_ip(250, 250), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_ip(252, 1000), Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(source_ip(253, 1000), Ipv4Addr::new(127, 0, 1, 2));
        assert_eq!(source_ip(5, 1), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(
            source_ip(MAX_SOURCE_IPS as usize - 1, MAX_SOURCE_IPS),
            Ipv4Addr::new(127, 0, 255, 254)
        );
    }
}
