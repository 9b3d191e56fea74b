//! Network facts and the rules decided from them alone: loopback, which client a request stands
//! for behind trusted proxies (TRUSTED_PROXIES), the `Host` allow-list (DNS rebinding) and the
//! websocket `Origin` policy (cross-site websocket hijacking). No rule grants anything for where
//! a request comes from: a proxy or a forwarder in front makes every client look local. Every
//! rule takes its inputs explicitly, so each is unit-tested; the web edge applies them.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, header};

/// Whether an address is this machine, IPv4-mapped IPv6 (`::ffff:127.0.0.1`) included.
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// A proxy address or network (`10.0.0.7`, `172.30.87.0/24`, `fd00::/8`) whose forwarding
/// headers are believed (TRUSTED_PROXIES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for ProxyNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or network"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0-{max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl ProxyNet {
    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether `peer` is a proxy whose forwarding headers are believed: one on this machine, or one
/// in `trusted` (TRUSTED_PROXIES).
pub(crate) fn forwards_for(peer: SocketAddr, trusted: &[ProxyNet]) -> bool {
    let ip = peer.ip().to_canonical();
    is_loopback(ip) || trusted.iter().any(|net| net.contains(ip))
}

/// The client a request stands for: the socket peer, or, when that peer is a proxy on this
/// machine or in `trusted` (TRUSTED_PROXIES), the address it reports: the last `X-Forwarded-For`
/// entry (the one the proxy appended; earlier ones come from the client and can be forged), else
/// `X-Real-IP`.
pub(crate) fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[ProxyNet]) -> IpAddr {
    let ip = peer.ip().to_canonical();
    if !forwards_for(peer, trusted) {
        return ip;
    }
    // The proxy appends its entry to the last header line (HAProxy's `option forwardfor` adds a
    // line of its own; nginx and Caddy extend the existing one): earlier lines and entries come
    // from the client and can be forged.
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .or_else(|| headers.get("x-real-ip").and_then(|v| v.to_str().ok()))
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    forwarded.map_or(ip, |ip| ip.to_canonical())
}

/// The host name of a `Host` header value, without port or IPv6 brackets, lower-cased.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    name.to_ascii_lowercase()
}

/// The `Host` rule. An IP literal or `localhost` cannot be rebound by a foreign DNS name, so it
/// is always served; a name must be in ALLOWED_HOSTS, except on a server bound to a public
/// address with no list configured (which cannot know its names: it logs a warning at start).
pub(crate) fn host_allowed(allowed_hosts: &[String], bind: SocketAddr, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return true; // HTTP/1.0 clients; browsers always send Host
    };
    let name = host_name(host);
    if name.parse::<IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if allowed_hosts.is_empty() {
        return !is_loopback(bind.ip());
    }
    allowed_hosts
        .iter()
        .any(|allowed| host_name(allowed) == name)
}

/// `scheme://host[:port]` without a default port, lower-cased, for comparisons.
fn normalize_origin(origin: &str) -> Option<(String, String)> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    let default_port = match scheme {
        "http" | "ws" => ":80",
        "https" | "wss" => ":443",
        _ => "",
    };
    let authority = authority
        .strip_suffix(default_port)
        .filter(|_| !default_port.is_empty())
        .unwrap_or(authority);
    Some((scheme.to_owned(), authority.to_owned()))
}

/// The websocket `Origin` rule: clients that send no `Origin` (plugins, scripts) are not
/// browsers and pass; a browser page passes when it is served by this tracker (same host and
/// port as the request's `Host`) or listed in ALLOWED_ORIGINS. `null` (sandboxed frames, files)
/// never passes.
pub(crate) fn origin_allowed(allowed_origins: &[String], headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Some((scheme, authority)) = normalize_origin(origin) else {
        return false; // "null" and anything that is not an origin
    };
    if allowed_origins
        .iter()
        .filter_map(|o| normalize_origin(o))
        .any(|(s, a)| s == scheme && a == authority)
    {
        return true;
    }
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    host == authority
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header"));
        }
        h
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mapped_ipv4_loopback_is_loopback() {
        assert!(is_loopback("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(is_loopback("::1".parse().expect("ip")));
        assert!(!is_loopback("::ffff:203.0.113.7".parse().expect("ip")));
    }

    #[test]
    fn hosts_names_need_the_list_and_ip_literals_always_pass() {
        let lo = addr("127.0.0.1:8765");
        assert!(host_allowed(&[], lo, Some("127.0.0.1:8765")));
        assert!(host_allowed(&[], lo, Some("[::1]:8765")));
        assert!(host_allowed(&[], lo, Some("localhost:8765")));
        assert!(
            !host_allowed(&[], lo, Some("evil.example:8765")),
            "rebinding"
        );
        let listed = strings(&["tracker.example.com"]);
        assert!(host_allowed(&listed, lo, Some("Tracker.Example.com")));
        assert!(host_allowed(&listed, lo, Some("tracker.example.com:443")));
        assert!(!host_allowed(&listed, lo, Some("evil.example")));
        assert!(host_allowed(
            &[],
            addr("0.0.0.0:8765"),
            Some("anything.example")
        ));
    }

    #[test]
    fn origins_same_host_or_listed_and_never_null() {
        let listed = strings(&["https://map.example.com"]);
        let check = |origin: &str, host: &str| {
            origin_allowed(&listed, &headers(&[("origin", origin), ("host", host)]))
        };
        assert!(check("http://127.0.0.1:8765", "127.0.0.1:8765"));
        assert!(check("https://tracker.example.com", "tracker.example.com"));
        assert!(check(
            "https://tracker.example.com",
            "tracker.example.com:443"
        ));
        assert!(check("https://map.example.com", "tracker.example.com"));
        assert!(!check("https://evil.example", "127.0.0.1:8765"));
        assert!(!check("null", "127.0.0.1:8765"));
        assert!(!check("http://127.0.0.1:9999", "127.0.0.1:8765"));
        assert!(
            origin_allowed(&listed, &headers(&[("host", "x")])),
            "no Origin"
        );
    }

    #[test]
    fn the_client_behind_a_local_proxy_is_the_forwarded_one() {
        // The proxy appended the last entry; a forged X-Real-IP does not override it.
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
            ("x-real-ip", "192.0.2.99"),
        ]);
        assert_eq!(
            client_ip(addr("127.0.0.1:1"), &h, &[]),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            client_ip(addr("192.0.2.5:1"), &h, &[]),
            "192.0.2.5".parse::<IpAddr>().expect("ip"),
            "only a local proxy is believed"
        );
    }

    #[test]
    fn the_client_is_the_last_entry_of_the_last_forwarded_line() {
        // A client sends its own X-Forwarded-For; HAProxy (`option forwardfor`) adds a line.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "198.51.100.66".parse().expect("header"));
        h.append("x-forwarded-for", "203.0.113.9".parse().expect("header"));
        assert_eq!(
            client_ip(addr("127.0.0.1:1"), &h, &[]),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        // nginx's $proxy_add_x_forwarded_for extends the client's own line instead.
        let h = headers(&[("x-forwarded-for", "198.51.100.66, 203.0.113.9")]);
        assert_eq!(
            client_ip(addr("127.0.0.1:1"), &h, &[]),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn a_trusted_proxy_network_is_believed_and_no_other() {
        let h = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.9")]);
        let trusted: Vec<ProxyNet> = ["172.30.87.0/24", "fd00::/8"]
            .iter()
            .map(|s| s.parse().expect("network"))
            .collect();
        let client = "203.0.113.9".parse::<IpAddr>().expect("ip");
        assert_eq!(client_ip(addr("172.30.87.5:1"), &h, &trusted), client);
        assert_eq!(client_ip(addr("[fd12::1]:1"), &h, &trusted), client);
        assert_eq!(
            client_ip(addr("172.30.88.5:1"), &h, &trusted),
            "172.30.88.5".parse::<IpAddr>().expect("ip")
        );
        for bad in ["", "300.1.1.1", "10.0.0.0/33", "fd00::/129", "10.0.0.0/x"] {
            assert!(bad.parse::<ProxyNet>().is_err(), "{bad}");
        }
        let everything: ProxyNet = "0.0.0.0/0".parse().expect("network");
        assert!(everything.contains("192.0.2.1".parse().expect("ip")));
    }
}
