//! An authenticating proxy in front of cupd (tailscale serve, oauth2-proxy, …) names the
//! user in request headers. The headers are believed only from a configured source: a
//! connection from a trusted address, or one that presented a verified client certificate
//! with an allowed common name. From anyone else they are ignored.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// Where the proxy's headers are trusted from and which headers they are.
#[derive(Debug, Clone)]
pub struct RequestHeaderOptions {
    /// Headers naming the user, tried in order; the first one present is used.
    pub username_headers: Vec<String>,
    /// Headers naming groups: every value of each, split at commas.
    pub group_headers: Vec<String>,
    /// Peer addresses the proxy connects from (e.g. `127.0.0.1/32`).
    pub trusted_sources: Vec<IpNet>,
    /// Common names of client certificates the proxy presents.
    pub allowed_names: Vec<String>,
}

/// Parses a trusted source: an address (`127.0.0.1`, `::1`) or a network (`10.0.0.0/8`).
pub fn parse_trusted_source(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither an IP address nor a network like 10.0.0.0/8"))
}

/// Most groups taken from the headers of one request.
const MAX_GROUPS: usize = 256;

impl RequestHeaderOptions {
    /// Whether a connection from `peer` with this certificate CN is the proxy.
    pub fn trusts(&self, peer: IpAddr, certificate_cn: Option<&str>) -> bool {
        let peer = canonical(peer);
        self.trusted_sources.iter().any(|net| net.contains(&peer))
            || certificate_cn.is_some_and(|cn| self.allowed_names.iter().any(|n| n == cn))
    }

    /// The user and groups the headers name, if a username header is present and not empty.
    /// `None` when the headers are absent or not UTF-8.
    pub fn identity(&self, headers: &HeaderMap) -> Option<(String, Vec<String>)> {
        let user = self.username_headers.iter().find_map(|name| {
            headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        })?;
        let mut groups = Vec::new();
        for name in &self.group_headers {
            for value in headers.get_all(name.as_str()) {
                let Ok(value) = value.to_str() else { continue };
                for group in value.split(',').map(str::trim).filter(|g| !g.is_empty()) {
                    if groups.len() < MAX_GROUPS {
                        groups.push(group.to_owned());
                    }
                }
            }
        }
        Some((user.to_owned(), groups))
    }
}

/// An IPv4 peer seen through a dual-stack socket as `::ffff:a.b.c.d` is that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> RequestHeaderOptions {
        RequestHeaderOptions {
            username_headers: vec!["X-Remote-User".into(), "Tailscale-User-Login".into()],
            group_headers: vec!["X-Remote-Group".into()],
            trusted_sources: vec!["127.0.0.1/32".parse().unwrap()],
            allowed_names: vec!["front-proxy".into()],
        }
    }

    #[test]
    fn sources_are_addresses_or_networks() {
        assert_eq!(
            parse_trusted_source("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(parse_trusted_source("::1").unwrap().to_string(), "::1/128");
        assert_eq!(
            parse_trusted_source(" 10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_trusted_source("localhost").is_err());
        assert!(parse_trusted_source("10.0.0.0/33").is_err());
    }

    #[test]
    fn trust_is_by_source_or_certificate_name() {
        let o = options();
        assert!(o.trusts("127.0.0.1".parse().unwrap(), None));
        assert!(o.trusts("::ffff:127.0.0.1".parse().unwrap(), None));
        assert!(!o.trusts("127.0.0.2".parse().unwrap(), None));
        assert!(!o.trusts("10.0.0.1".parse().unwrap(), Some("alice")));
        assert!(o.trusts("10.0.0.1".parse().unwrap(), Some("front-proxy")));
    }

    #[test]
    fn headers_name_user_and_groups() {
        let o = options();
        let mut h = HeaderMap::new();
        assert_eq!(o.identity(&h), None);
        h.insert("tailscale-user-login", "alice@example.com".parse().unwrap());
        h.append("x-remote-group", "dev, ops".parse().unwrap());
        h.append("x-remote-group", "admins".parse().unwrap());
        let (user, groups) = o.identity(&h).unwrap();
        assert_eq!(user, "alice@example.com");
        assert_eq!(groups, ["dev", "ops", "admins"]);
        h.insert("x-remote-user", " ".parse().unwrap());
        assert_eq!(o.identity(&h).unwrap().0, "alice@example.com");
        h.insert("x-remote-user", "bob".parse().unwrap());
        assert_eq!(o.identity(&h).unwrap().0, "bob");
    }
}
