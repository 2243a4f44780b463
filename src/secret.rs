//! Secrets that must never be printed: a wrapper that redacts itself, and URL redaction for
//! connection strings that may carry a password. A leaf.

use std::fmt;

/// Secret bytes (a signing key, a provider's API key); `Debug` prints `<redacted>`.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// The raw bytes, for the one place that uses them (a key, a header to a provider).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A URL with any `user:password@` replaced, for printing.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://<redacted>@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_url_passwords_never_print() {
        assert_eq!(format!("{:?}", Secret::new(b"hunter2".to_vec())), "Secret(<redacted>)");
        assert_eq!(redact_url("redis://user:pw@127.0.0.1:6379/0"), "redis://<redacted>@127.0.0.1:6379/0");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
