//! One sign-in attempt's secrets (RFC 7636 PKCE with S256, the OAuth `state`, the OpenID
//! `nonce`), each 256 bits from the operating system's generator, base64url without padding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The secrets of one authorization request. The verifier and nonce stay with the gateway (in
/// the attempt's record); only the challenge, the state and the nonce travel in the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Attempt {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attempt { .. }") // secrets: never in a log line
    }
}

impl Attempt {
    /// A new attempt; Err only when the system has no randomness to give.
    pub fn new() -> Result<Attempt, getrandom::Error> {
        Ok(Attempt { state: random()?, nonce: random()?, verifier: random()? })
    }

    /// `code_challenge` for `code_challenge_method=S256`.
    pub fn challenge(&self) -> String {
        challenge(&self.verifier)
    }
}

/// BASE64URL(SHA256(verifier)), RFC 7636 section 4.2.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// 32 random bytes as 43 base64url characters (a valid PKCE verifier: 43-128 unreserved).
fn random() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636s_example() {
        // RFC 7636 appendix B.
        assert_eq!(challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn each_attempt_is_new_and_its_verifier_well_formed() {
        let (a, b) = (Attempt::new().unwrap(), Attempt::new().unwrap());
        assert_ne!(a.state, b.state);
        assert_ne!(a.verifier, b.verifier);
        assert_ne!(a.state, a.nonce);
        assert_eq!(a.verifier.len(), 43);
        assert!(a.verifier.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(format!("{a:?}"), "Attempt { .. }");
        assert_eq!(a.challenge(), challenge(&a.verifier));
    }
}
