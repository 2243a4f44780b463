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
