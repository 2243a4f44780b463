//! Verified TLS client certificates as identities: what the TLS handshake hands the request
//! phases, and the operator's map from a certificate's subject or SAN URI to a user and role
//! (`client_certs.map`). Pure. A leaf.

use std::collections::HashMap;

/// A client certificate the TLS handshake verified against `server.tls.client_auth.ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject in RFC 4514 order (most specific first): `CN=build-bot,O=Example`.
    pub subject: String,
    /// The certificate's URI subject alternative names.
    pub uris: Vec<String>,
}

/// Who a mapped certificate speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    pub user_id: String,
    pub role: String,
}

/// `client_certs.map`: subject or SAN URI -> identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertMap {
    map: HashMap<String, CertIdentity>,
}

/// A distinguished name in one canonical spelling: RDNs split on unescaped commas, spaces
/// around them and around `=` dropped, attribute types upper-cased. `cn=a, o=B` and
/// `CN=a,O=B` are the same name; values keep their case.
pub fn canonical_dn(dn: &str) -> String {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            current.push(c);
            escaped = true;
        } else if c == ',' {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
        .iter()
        .map(|rdn| match rdn.split_once('=') {
            Some((t, v)) => format!("{}={}", t.trim().to_ascii_uppercase(), v.trim()),
            None => rdn.trim().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl CertMap {
    /// The map from `(subject or URI, identity)` pairs; subjects are compared canonically.
    pub fn new(entries: impl IntoIterator<Item = (String, CertIdentity)>) -> Self {
        let map =
            entries.into_iter().map(|(k, v)| (if k.contains("://") || k.starts_with("urn:") { k } else { canonical_dn(&k) }, v)).collect();
        CertMap { map }
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The identity a certificate maps to: by its subject, else by its first mapped SAN URI.
    pub fn identify(&self, cert: &ClientCert) -> Option<&CertIdentity> {
        self.map.get(&canonical_dn(&cert.subject)).or_else(|| cert.uris.iter().find_map(|u| self.map.get(u)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user: &str) -> CertIdentity {
        CertIdentity { user_id: user.into(), role: "user".into() }
    }

    #[test]
    fn subjects_match_in_any_spacing_and_attribute_case() {
        let m = CertMap::new([("CN=build-bot,O=Example".to_string(), who("bot")), ("spiffe://example.org/ci".to_string(), who("ci"))]);
        let cert =
            |subject: &str, uris: &[&str]| ClientCert { subject: subject.into(), uris: uris.iter().map(|s| s.to_string()).collect() };
        assert_eq!(m.identify(&cert("cn=build-bot, o=Example", &[])).map(|i| i.user_id.as_str()), Some("bot"));
        assert_eq!(m.identify(&cert("CN=build-bot,O=example", &[])), None, "values keep their case");
        assert_eq!(m.identify(&cert("CN=other", &["spiffe://example.org/ci"])).map(|i| i.user_id.as_str()), Some("ci"));
        assert_eq!(m.identify(&cert("CN=other", &["spiffe://example.org/x"])), None);
        assert_eq!(canonical_dn(r"CN=a\, b ,O=x"), r"CN=a\, b,O=x", "escaped commas stay in the value");
    }
}
