//! The signed identity assertion an upstream may ask for (`upstreams.NAME.identity_assertion`):
//! a 60-second JWT, signed with the gateway's current asymmetric key, whose audience is the
//! upstream's name. An application that verifies it against `/.well-known/jwks.json` no longer
//! has to trust plain `X-User-*` headers: a request that did not pass the gateway has none.

use serde::Serialize;

use super::tokens::{TokenError, TokenManager};
use crate::policy::{Credential, Identity};

/// How long an assertion is valid.
pub const LIFETIME_SECONDS: u64 = 60;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    /// The identity provider the caller came from (None: the gateway's own credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    idp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_id: Option<&'a str>,
    request_id: &'a str,
    iat: u64,
    exp: u64,
    jti: &'a str,
}

/// The assertion for one upstream request (`identity` None: a public route, still proving the
/// request came through the gateway).
pub fn assertion(
    tokens: &TokenManager,
    upstream: &str,
    identity: Option<&Identity>,
    request_id: &str,
    now: u64,
) -> Result<String, TokenError> {
    let credential = identity.map(|i| &i.credential);
    let claims = Claims {
        iss: tokens.issuer().unwrap_or("portcullis"),
        aud: upstream,
        sub: identity.map(|i| i.user_id.as_str()),
        role: identity.and_then(|i| i.role.as_deref()),
        idp: identity.and_then(Identity::provider),
        sid: identity.and_then(Identity::session_id),
        api_key_id: match credential {
            Some(Credential::ApiKey { id }) => Some(id),
            _ => None,
        },
        request_id,
        iat: now,
        exp: now + LIFETIME_SECONDS,
        jti: request_id,
    };
    tokens.sign(&claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tokens::{tests::settings, RingKey, TokenSettings};
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    /// The assertion is signed by the ring's current key, so an upstream verifies it against the
    /// published JWKS: issuer (the configured one, else `portcullis`), its own name as audience,
    /// the caller, and a 60-second life.
    #[test]
    fn an_assertion_verifies_against_the_published_keys() {
        let pem = crate::auth::keygen::generate_pem(Algorithm::EdDSA).unwrap();
        let key = RingKey::from_pem(Some("k1".into()), pem.expose(), Algorithm::EdDSA).unwrap();
        let ring = TokenSettings { keys: vec![key], algorithm: Algorithm::EdDSA, ..settings() };
        let alice = Identity::session_until("alice", Some("user".into()), "s-1", "j", 0);
        for (issuer, expected) in [(None, "portcullis"), (Some("https://id.example"), "https://id.example")] {
            let tokens = TokenManager::new(&TokenSettings { issuer: issuer.map(str::to_string), ..ring.clone() });
            let signed = assertion(&tokens, "billing", Some(&alice), "req-1", crate::clock::unix_now()).unwrap();
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(tokens.jwks()["keys"][0].clone()).unwrap();
            let mut v = Validation::new(Algorithm::EdDSA);
            v.set_audience(&["billing"]);
            v.set_issuer(&[expected]);
            let claims = jsonwebtoken::decode::<serde_json::Value>(&signed, &DecodingKey::from_jwk(&jwk).unwrap(), &v).unwrap().claims;
            assert_eq!(
                (claims["sub"].as_str(), claims["role"].as_str(), claims["sid"].as_str()),
                (Some("alice"), Some("user"), Some("s-1"))
            );
            assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), LIFETIME_SECONDS);
            assert_eq!(claims["request_id"], "req-1");
        }
    }
}
