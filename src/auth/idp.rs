//! External identity providers (`identity_providers`), the pure part: a provider's validated
//! settings, its JSON Web Key Set as verification keys (the algorithm comes from the key, never
//! from the token alone), verifying one of its access tokens, and mapping its claims to the
//! gateway's user id, role and scopes. No I/O: [`super::issuers`] fetches the keys.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::tokens::{check_header, TokenError};
use crate::policy::{header_word as header_safe, Credential, Identity, Roles};

/// Where a provider's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery(String),
    /// A JWKS URL given directly.
    Direct(String),
}

/// The claims a provider's identity is read from: dotted paths into the token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPaths {
    pub user_id: String,
    pub role: Option<String>,
    pub scopes: Option<String>,
}

/// How often a provider's keys are fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksRefresh {
    pub min: Duration,
    pub max: Duration,
    /// At most one fetch per this long for tokens naming an unknown `kid`.
    pub unknown_kid_cooldown: Duration,
}

/// One `identity_providers.NAME`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpSettings {
    pub name: String,
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    pub source: JwksSource,
    /// At least one must be in the token's `aud`.
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub claims: ClaimPaths,
    /// IdP role value -> gateway role.
    pub role_map: Vec<(String, String)>,
    pub default_role: Option<String>,
    pub leeway_seconds: u64,
    /// The longest `exp - iat` accepted.
    pub max_lifetime: Duration,
    pub refresh: JwksRefresh,
}

/// The algorithms an external provider may use.
pub const EXTERNAL_ALGORITHMS: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// One verification key of a provider: the algorithms it may verify are fixed by the key.
pub struct VerifyKey {
    pub kid: Option<String>,
    decoding: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl VerifyKey {
    /// Whether `signature` (base64url) signs `message` under this key with `alg`: false for an
    /// algorithm the key does not admit, whatever the signature.
    pub fn verifies(&self, message: &[u8], signature: &str, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg) && jsonwebtoken::crypto::verify(signature, message, &self.decoding, alg).unwrap_or(false)
    }
}

/// A provider's verification keys.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
}

impl KeySet {
    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, in JWKS order.
    pub fn keys(&self) -> &[Arc<VerifyKey>] {
        &self.keys
    }

    /// The key a token's `kid` names (a token without `kid` may use a set's only key).
    fn find(&self, kid: Option<&str>) -> Option<&Arc<VerifyKey>> {
        match kid {
            Some(k) => self.keys.iter().find(|key| key.kid.as_deref() == Some(k)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

fn b64_len(s: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_or(0, |b| {
        let lead = b.iter().take_while(|x| **x == 0).count();
        let bytes = &b[lead..];
        bytes.first().map_or(0, |first| (bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize))
    })
}

/// The algorithms one JWK may verify, among `allowed`: its `alg` if it names one, else what its
/// type and curve admit. Err says why the key is left out.
fn key_algorithms(jwk: &Jwk, allowed: &[Algorithm]) -> Result<Vec<Algorithm>, String> {
    if jwk.common.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return Err("not a signing key (`use`)".into());
    }
    if jwk.common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return Err("not a verification key (`key_ops`)".into());
    }
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let bits = b64_len(&rsa.n);
            if bits < MIN_RSA_BITS {
                return Err(format!("an RSA key of {bits} bits (at least {MIN_RSA_BITS} are required)"));
            }
            vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512]
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return Err("an unsupported curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
        _ => return Err("an unsupported key type (symmetric keys are never accepted from a provider)".into()),
    };
    let named = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(match a {
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::RS384 => Algorithm::RS384,
            KeyAlgorithm::RS512 => Algorithm::RS512,
            KeyAlgorithm::PS256 => Algorithm::PS256,
            KeyAlgorithm::PS384 => Algorithm::PS384,
            KeyAlgorithm::PS512 => Algorithm::PS512,
            KeyAlgorithm::ES256 => Algorithm::ES256,
            KeyAlgorithm::ES384 => Algorithm::ES384,
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            _ => return Err("an `alg` this gateway does not verify".into()),
        }),
    };
    let algs: Vec<Algorithm> = by_type.into_iter().filter(|a| named.is_none_or(|n| n == *a) && allowed.contains(a)).collect();
    if algs.is_empty() {
        return Err("no configured algorithm fits it".into());
    }
    Ok(algs)
}

/// A provider's JWKS as verification keys; the keys left out, each with why.
pub fn parse_jwks(text: &[u8], allowed: &[Algorithm]) -> Result<(KeySet, Vec<String>), String> {
    let value: Value = serde_json::from_slice(text).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let keys = value.get("keys").and_then(Value::as_array).ok_or("the JWKS has no `keys` list")?;
    let mut set = KeySet::default();
    let mut skipped = Vec::new();
    for (i, raw) in keys.iter().enumerate() {
        let jwk: Jwk = match serde_json::from_value(raw.clone()) {
            Ok(j) => j,
            Err(_) => {
                skipped.push(format!("key {i}: not a JWK this gateway reads"));
                continue;
            }
        };
        let kid = jwk.common.key_id.clone();
        match key_algorithms(&jwk, allowed).and_then(|algs| Ok((algs, DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?))) {
            Ok((algorithms, decoding)) => set.keys.push(Arc::new(VerifyKey { kid, decoding, algorithms })),
            Err(why) => skipped.push(format!("key {} : {why}", kid.as_deref().unwrap_or("(no kid)"))),
        }
    }
    Ok((set, skipped))
}

/// Why an external token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalError {
    /// A 401, like the gateway's own tokens'.
    Token(TokenError),
    /// The token names a `kid` the provider's current keys lack (a refetch may find it).
    UnknownKid,
    /// Verified, but no role maps and there is no `default_role`: 403.
    NoRole,
}

/// The unverified `iss` of a token (to pick which provider verifies it); None if unreadable.
pub fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

/// The value at a dotted path (`realm_access.roles`) of the claims.
fn at_path<'v>(claims: &'v Value, path: &str) -> Option<&'v Value> {
    // A claim whose own name has dots (`https://example.com/roles`) is read whole first.
    claims.get(path).or_else(|| path.split('.').try_fold(claims, |v, k| v.get(k)))
}

/// Verifies a token of `idp` with its `keys` and maps it to an identity; `now` for the lifetime
/// checks (`exp` and `nbf` are jsonwebtoken's, with the provider's leeway).
pub fn verify(token: &str, idp: &IdpSettings, keys: &KeySet, roles: &Roles, now: u64) -> Result<(Identity, u64), ExternalError> {
    let kid = check_header(token).map_err(ExternalError::Token)?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| ExternalError::Token(e.into()))?;
    let Some(key) = keys.find(kid.as_deref()) else {
        return Err(if kid.is_some() { ExternalError::UnknownKid } else { ExternalError::Token(TokenError::UnknownKey) });
    };
    // The algorithm is the key's: a token may only pick among what its key admits.
    if !key.algorithms.contains(&header.alg) {
        return Err(ExternalError::Token(TokenError::BadAlgorithm));
    }
    let mut v = Validation::new(header.alg);
    v.algorithms = vec![header.alg];
    v.leeway = idp.leeway_seconds;
    v.validate_nbf = true;
    v.set_issuer(&[&idp.issuer]);
    v.set_audience(&idp.audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud", "iat"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key.decoding, &v).map_err(|e| ExternalError::Token(e.into()))?.claims;
    let num = |k: &str| claims.get(k).and_then(Value::as_u64);
    let (exp, iat) = (num("exp").unwrap_or(0), num("iat").ok_or(ExternalError::Token(TokenError::InvalidClaims))?);
    if iat > now.saturating_add(idp.leeway_seconds) || exp.saturating_sub(iat) > idp.max_lifetime.as_secs() {
        return Err(ExternalError::Token(TokenError::InvalidClaims));
    }
    let user_id = match at_path(&claims, &idp.claims.user_id) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(ExternalError::Token(TokenError::InvalidClaims)),
    };
    if !header_safe(&user_id) {
        // An empty `sub` is refused like an empty `user_id` in the gateway's own tokens.
        return Err(ExternalError::Token(TokenError::Malformed));
    }
    let role = map_role(idp, idp.claims.role.as_deref().and_then(|p| at_path(&claims, p)), roles).ok_or(ExternalError::NoRole)?;
    let scopes = idp.claims.scopes.as_deref().and_then(|p| at_path(&claims, p)).map(|v| match v {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    });
    let jti = claims.get("jti").and_then(Value::as_str).filter(|j| header_safe(j)).map(str::to_string);
    let identity = Identity {
        user_id,
        role: Some(role),
        credential: Credential::External { provider: idp.name.clone(), jti, exp },
        // A provider's token is limited to its scopes (none listed: none held).
        scopes: Some(scopes.unwrap_or_default()),
    };
    Ok((identity, exp))
}

/// The gateway role for a provider's role claim (a string or a list): the highest mapped one,
/// else the default role.
fn map_role(idp: &IdpSettings, claim: Option<&Value>, roles: &Roles) -> Option<String> {
    let values: Vec<&str> = match claim {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let map: HashMap<&str, &str> = idp.role_map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    values
        .iter()
        .filter_map(|v| map.get(v).copied())
        .max_by_key(|r| roles.level(r))
        .map(str::to_string)
        .or_else(|| idp.default_role.clone())
}

/// When to fetch a provider's keys next: `Cache-Control: max-age`, kept within the bounds.
pub fn refresh_after(cache_control: Option<&str>, refresh: &JwksRefresh) -> Duration {
    let max_age = cache_control
        .and_then(|cc| cc.split(',').find_map(|d| d.trim().strip_prefix("max-age=").and_then(|v| v.trim_matches('"').parse::<u64>().ok())));
    Duration::from_secs(max_age.unwrap_or(refresh.min.as_secs())).clamp(refresh.min, refresh.max)
}

#[cfg(test)]
mod tests;
