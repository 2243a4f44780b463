//! JWT access and refresh tokens (the seed's TokenManager): minting, verification with a pinned
//! algorithm, and refreshing an access token from a refresh token.
//!
//! Never logs or returns a token or the secret in an error.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

use crate::clock::unix_now;
use crate::ids::new_id;
use crate::secret::Secret;
use jsonwebtoken::Algorithm;

/// One key of the gateway's ring: parsed once, at config load.
#[derive(Clone)]
pub struct RingKey {
    /// The `kid` of the tokens it signs (None: a key without an id, for tokens without `kid`).
    pub id: Option<String>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public key as a JWK (asymmetric keys only; published at /.well-known/jwks.json).
    public: Option<Jwk>,
}

impl std::fmt::Debug for RingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingKey").field("id", &self.id).field("asymmetric", &self.public.is_some()).finish_non_exhaustive()
    }
}

impl RingKey {
    /// An HMAC key (HS256/384/512).
    pub fn hmac(id: Option<String>, secret: &Secret) -> Self {
        let bytes = secret.expose();
        RingKey { id, encoding: EncodingKey::from_secret(bytes), decoding: DecodingKey::from_secret(bytes), public: None }
    }

    /// An ES256 or EdDSA key from a PKCS#8 PEM private key; the message says what is wrong.
    pub fn from_pem(id: Option<String>, pem: &[u8], algorithm: Algorithm) -> Result<Self, String> {
        let unreadable = || format!("not a PKCS#8 PEM private key for {algorithm:?}");
        let encoding = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem).map_err(|_| unreadable())?,
            Algorithm::EdDSA => {
                // Either PKCS#8 form (v1, the seed alone; v2, with the public key), handed to
                // jsonwebtoken as v1, the only one it reads.
                use ed25519_dalek::pkcs8::DecodePrivateKey;
                let text = std::str::from_utf8(pem).map_err(|_| unreadable())?;
                let key = ed25519_dalek::SigningKey::from_pkcs8_pem(text).map_err(|_| unreadable())?;
                EncodingKey::from_ed_der(&ed25519_pkcs8_v1(&key.to_bytes()))
            }
            other => return Err(format!("{other:?} keys are not read from files")),
        };
        let mut public = Jwk::from_encoding_key(&encoding, algorithm).map_err(|_| format!("not a {algorithm:?} private key"))?;
        public.common.key_id = id.clone();
        public.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let decoding = DecodingKey::from_jwk(&public).map_err(|_| format!("not a {algorithm:?} private key"))?;
        // A key that cannot verify what it signs is not this algorithm's key (EdDSA from a P-256 file, ...).
        let probe = jsonwebtoken::encode(&Header::new(algorithm), &serde_json::json!({"exp": u64::MAX}), &encoding)
            .map_err(|_| format!("not a {algorithm:?} private key"))?;
        let mut v = Validation::new(algorithm);
        v.set_required_spec_claims::<&str>(&[]);
        jsonwebtoken::decode::<serde_json::Value>(&probe, &decoding, &v).map_err(|_| format!("not a {algorithm:?} private key"))?;
        Ok(RingKey { id, encoding, decoding, public: Some(public) })
    }
}

#[cfg(test)]
impl RingKey {
    /// The signing key (tests forge tokens with it).
    pub fn encoding_for_tests(&self) -> EncodingKey {
        self.encoding.clone()
    }
}

/// An Ed25519 private key (its 32-byte seed) as PKCS#8 v1 DER (RFC 8410).
pub fn ed25519_pkcs8_v1(seed: &[u8; 32]) -> Vec<u8> {
    const HEADER: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    [&HEADER[..], seed].concat()
}

/// Token signing and verification settings (`tokens:` in gateway.yaml) (environment overrides already applied).
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The ring: the first key signs, every key verifies.
    pub keys: Vec<RingKey>,
    pub algorithm: Algorithm,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub leeway_seconds: u64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Entries in the verified-access-token cache (0: off).
    pub verify_cache_size: usize,
    /// The longest lifetime (`exp - iat`) an access token may claim.
    pub max_lifetime: Duration,
}

/// Which kind of token a JWT is (its `type` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    /// The value of the `type` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }
}

/// The claims Portcullis puts in (and requires of) its tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    #[serde(deserialize_with = "string_or_integer")]
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    pub sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// `user_id` may be a JSON string or integer; it is always handled as a string.
fn string_or_integer<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(i64),
    }
    Ok(match Id::deserialize(d)? {
        Id::S(s) => s,
        Id::N(n) => n.to_string(),
    })
}

/// Why a token was refused. Every variant is a 401 to the client.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TokenError {
    #[error("no bearer token was presented")]
    Missing,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not accepted")]
    BadAlgorithm,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not an {} token", .0.as_str())]
    WrongType(TokenKind),
    #[error("the token's claims are not valid here")]
    InvalidClaims,
    #[error("the token could not be signed")]
    Signing,
    #[error("the token's key is not known")]
    UnknownKey,
    #[error("the token's header asks for an extension this gateway does not understand")]
    Unsupported,
}

impl TokenError {
    /// Every reason a presented token is refused for (`signing` is the gateway's own failure).
    pub const REASONS: [&'static str; 9] = [
        "missing",
        "malformed",
        "bad_algorithm",
        "bad_signature",
        "expired",
        "wrong_type",
        "invalid_claims",
        "unknown_key",
        "unsupported_header",
    ];

    /// A stable reason for audit events and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::BadAlgorithm => "bad_algorithm",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::WrongType(_) => "wrong_type",
            TokenError::InvalidClaims => "invalid_claims",
            TokenError::Signing => "signing",
            TokenError::UnknownKey => "unknown_key",
            TokenError::Unsupported => "unsupported_header",
        }
    }
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => TokenError::BadAlgorithm,
            ErrorKind::UnsupportedAlgorithm => TokenError::BadAlgorithm,
            ErrorKind::InvalidIssuer
            | ErrorKind::InvalidAudience
            | ErrorKind::InvalidSubject
            | ErrorKind::ImmatureSignature
            | ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_) => TokenError::InvalidClaims,
            _ => TokenError::Malformed,
        }
    }
}

pub use crate::policy::Identity;

impl Identity {
    /// The identity an access token's claims name. Its values become upstream request headers,
    /// so anything that is not a plain header-safe word is refused as malformed.
    fn from_claims(claims: Claims) -> Result<Self, TokenError> {
        use crate::policy::header_word as header_safe;
        if !header_safe(&claims.user_id) || !header_safe(&claims.sid) || !claims.role.as_deref().is_none_or(header_safe) {
            return Err(TokenError::Malformed);
        }
        if !header_safe(&claims.jti) {
            return Err(TokenError::Malformed);
        }
        Ok(Identity::session_until(claims.user_id, claims.role, claims.sid, claims.jti, claims.exp))
    }
}

/// Tokens longer than this are verified every time instead of being cached.
const MAX_CACHED_TOKEN_BYTES: usize = 1024;

/// An access token that passed full verification, kept so that the next request carrying the
/// same token skips the HMAC and JSON work. Only the time-dependent check (`exp`) is repeated
/// on a hit: signature, algorithm, type, issuer and audience cannot change for the same bytes
/// under the same key, and a token already past its `nbf` stays past it.
#[derive(Clone)]
struct Verified {
    identity: Arc<Identity>,
    exp: u64,
}

/// Whether a token with this `exp` is expired at `now`: the same rule as jsonwebtoken's.
fn expired(exp: u64, leeway: u64, now: u64) -> bool {
    exp < now.saturating_sub(leeway)
}

/// A freshly issued access/refresh pair.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// The refresh token's `jti`: the session expects exactly this one next.
    pub refresh_jti: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// What to put in a token; `ttl` None means the configured default for its kind.
#[derive(Debug, Clone)]
pub struct TokenSpec<'a> {
    pub user_id: &'a str,
    pub role: Option<&'a str>,
    pub kind: TokenKind,
    pub session_id: &'a str,
    pub ttl: Option<Duration>,
    /// The `jti`; a new random one when None.
    pub jti: Option<&'a str>,
}

/// Mints and verifies tokens with a key ring (the first key signs) and one pinned algorithm.
pub struct TokenManager {
    ring: Vec<RingKey>,
    header: Header,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
    issuer: Option<String>,
    audience: Option<String>,
    max_lifetime: u64,
    /// Verified access tokens by their exact bytes (None when `tokens.verify_cache_size` is 0).
    /// Lives and dies with this manager, so a new secret or new claim rules start empty.
    verified: Option<quick_cache::sync::Cache<Box<str>, Verified>>,
}

impl TokenManager {
    /// Builds the manager from validated settings.
    pub fn new(settings: &TokenSettings) -> Self {
        let mut validation = Validation::new(settings.algorithm);
        validation.algorithms = vec![settings.algorithm];
        validation.leeway = settings.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &settings.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &settings.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let mut header = Header::new(settings.algorithm);
        header.kid = settings.keys.first().and_then(|k| k.id.clone());
        TokenManager {
            ring: settings.keys.clone(),
            header,
            validation,
            access_ttl: settings.access_ttl,
            refresh_ttl: settings.refresh_ttl,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            max_lifetime: settings.max_lifetime.as_secs(),
            verified: (settings.verify_cache_size > 0).then(|| quick_cache::sync::Cache::new(settings.verify_cache_size)),
        }
    }

    /// Mints one token as described, issued now.
    pub fn create_token(&self, spec: &TokenSpec<'_>) -> Result<String, TokenError> {
        self.create_token_at(spec, unix_now())
    }

    /// Mints one token as if issued at `now` (seconds since the epoch).
    pub fn create_token_at(&self, spec: &TokenSpec<'_>, now: u64) -> Result<String, TokenError> {
        let ttl = spec.ttl.unwrap_or(match spec.kind {
            TokenKind::Access => self.access_ttl,
            TokenKind::Refresh => self.refresh_ttl,
        });
        let claims = Claims {
            user_id: spec.user_id.to_string(),
            role: match spec.kind {
                TokenKind::Access => spec.role.map(str::to_string),
                TokenKind::Refresh => None,
            },
            kind: spec.kind.as_str().to_string(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: now,
            jti: spec.jti.map_or_else(new_id, str::to_string),
            sid: spec.session_id.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let key = self.ring.first().ok_or(TokenError::Signing)?;
        jsonwebtoken::encode(&self.header, &claims, &key.encoding).map_err(|_| TokenError::Signing)
    }

    /// An access token for a user's session.
    pub fn create_access_token(&self, user_id: &str, role: &str, session_id: &str) -> Result<String, TokenError> {
        let spec = TokenSpec { user_id, role: Some(role), kind: TokenKind::Access, session_id, ttl: None, jti: None };
        self.create_token(&spec)
    }

    /// A refresh token for a user's session.
    pub fn create_refresh_token(&self, user_id: &str, session_id: &str) -> Result<String, TokenError> {
        self.create_refresh_token_with_jti(user_id, session_id, &new_id())
    }

    /// A refresh token with a chosen `jti` (the one the session will expect).
    pub fn create_refresh_token_with_jti(&self, user_id: &str, session_id: &str, jti: &str) -> Result<String, TokenError> {
        let spec = TokenSpec { user_id, role: None, kind: TokenKind::Refresh, session_id, ttl: None, jti: Some(jti) };
        self.create_token(&spec)
    }

    /// Both tokens for a user's session.
    pub fn create_token_pair(&self, user_id: &str, role: &str, session_id: &str) -> Result<TokenPair, TokenError> {
        let refresh_jti = new_id();
        Ok(TokenPair {
            access_token: self.create_access_token(user_id, role, session_id)?,
            refresh_token: self.create_refresh_token_with_jti(user_id, session_id, &refresh_jti)?,
            refresh_jti,
            expires_in: self.access_ttl.as_secs(),
        })
    }

    /// The access token lifetime.
    pub fn access_ttl(&self) -> Duration {
        self.access_ttl
    }

    /// The leeway allowed on `exp`, in seconds.
    pub fn leeway_seconds(&self) -> u64 {
        self.validation.leeway
    }

    /// Verifies signature, algorithm, expiry (with leeway), issuer/audience when configured, and
    /// that the token is of the `expected` kind.
    pub fn verify(&self, token: &str, expected: TokenKind) -> Result<Claims, TokenError> {
        self.verify_at(token, expected, unix_now())
    }

    /// [`Self::verify`] with the clock for the lifetime checks given (`exp` itself is
    /// jsonwebtoken's to check, on its own clock).
    pub fn verify_at(&self, token: &str, expected: TokenKind, now: u64) -> Result<Claims, TokenError> {
        let kid = check_header(token)?;
        let key = self.ring.iter().find(|k| k.id.as_deref() == kid.as_deref()).ok_or(TokenError::UnknownKey)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)?;
        let c = data.claims;
        if c.kind != expected.as_str() {
            return Err(TokenError::WrongType(expected));
        }
        let leeway = self.validation.leeway;
        // An access token that claims to live longer than any the gateway mints, or to be issued
        // in the future, was not minted here as claimed.
        if c.iat > now.saturating_add(leeway) || (expected == TokenKind::Access && c.exp.saturating_sub(c.iat) > self.max_lifetime) {
            return Err(TokenError::InvalidClaims);
        }
        Ok(c)
    }

    /// The public keys of the ring as a JWK set (asymmetric keys only; empty for HMAC).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<&Jwk> = self.ring.iter().filter_map(|k| k.public.as_ref()).collect();
        serde_json::json!({ "keys": keys })
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.header.alg
    }

    /// The configured issuer (`iss`), if any.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// Signs arbitrary claims with the ring's first key (for the identity assertion).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        let key = self.ring.first().ok_or(TokenError::Signing)?;
        jsonwebtoken::encode(&self.header, claims, &key.encoding).map_err(|_| TokenError::Signing)
    }

    /// Authenticates a bearer access token: full verification the first time a token is seen,
    /// then a cache hit with only its expiry checked again.
    pub fn authenticate(&self, token: &str) -> Result<Arc<Identity>, TokenError> {
        self.authenticate_at(token, unix_now())
    }

    /// [`Self::authenticate`] with the clock for cache hits given (a miss uses jsonwebtoken's).
    pub fn authenticate_at(&self, token: &str, now: u64) -> Result<Arc<Identity>, TokenError> {
        if let Some(hit) = self.cached_at(token, now) {
            return hit;
        }
        let cache = self.verified.as_ref().filter(|_| token.len() <= MAX_CACHED_TOKEN_BYTES);
        if !well_formed(token) {
            return Err(TokenError::Malformed);
        }
        let claims = self.verify(token, TokenKind::Access)?;
        let exp = claims.exp;
        let identity = Arc::new(Identity::from_claims(claims)?);
        if let Some(cache) = cache {
            cache.insert(token.into(), Verified { identity: identity.clone(), exp });
        }
        Ok(identity)
    }

    /// The verdict on a token this manager has verified before (None: not in the cache), with
    /// only its expiry checked again. Lets a request with one of the gateway's own tokens skip
    /// the external providers' routing altogether.
    pub fn cached_at(&self, token: &str, now: u64) -> Option<Result<Arc<Identity>, TokenError>> {
        let cache = self.verified.as_ref().filter(|_| token.len() <= MAX_CACHED_TOKEN_BYTES)?;
        let hit = cache.get(token)?;
        if expired(hit.exp, self.validation.leeway, now) {
            cache.remove(token);
            return Some(Err(TokenError::Expired));
        }
        Some(Ok(hit.identity))
    }

    /// A new access token for the refresh token's user and session, carrying `role` (the user's
    /// current role, which the refresh token itself does not hold).
    pub fn refresh_access_token(&self, refresh_token: &str, role: &str) -> Result<String, TokenError> {
        let claims = self.verify(refresh_token, TokenKind::Refresh)?;
        self.create_access_token(&claims.user_id, role, &claims.sid)
    }
}

/// The token in an `Authorization: Bearer <token>` header value. Its characters are checked
/// by [`TokenManager::authenticate`] (once per distinct token, not on every cache hit).
pub fn bearer_token(value: Option<&[u8]>) -> Result<&str, TokenError> {
    std::str::from_utf8(bearer_bytes(value)?).map_err(|_| TokenError::Malformed)
}

/// [`bearer_token`] before the UTF-8 check: the credential's bytes. Worked on bytes so that a
/// caller that only asks "is this an API key?" never validates a whole JWT as text.
pub fn bearer_bytes(value: Option<&[u8]>) -> Result<&[u8], TokenError> {
    const MAX_TOKEN_BYTES: usize = 8 * 1024;
    let value = value.ok_or(TokenError::Missing)?.trim_ascii();
    let space = value.iter().position(|&b| b == b' ').ok_or(TokenError::Malformed)?;
    let (scheme, token) = (&value[..space], value[space + 1..].trim_ascii_start());
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed);
    }
    Ok(token)
}

/// The JOSE header checks jsonwebtoken does not make. `crit` names extensions the recipient
/// must understand (RFC 7515 4.1.11); this gateway understands none, so any `crit` is refused.
/// A `kid` must be a non-empty string without control characters; `"kid": null` or a number is
/// refused, not read as "no kid". Returns the `kid`.
pub(crate) fn check_header(token: &str) -> Result<Option<String>, TokenError> {
    use base64::Engine;
    let segment = token.split('.').next().ok_or(TokenError::Malformed)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).map_err(|_| TokenError::Malformed)?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if header.contains_key("crit") {
        return Err(TokenError::Unsupported);
    }
    match header.get("kid") {
        None => Ok(None),
        Some(serde_json::Value::String(k)) if !k.is_empty() && k.len() <= 256 && !k.chars().any(char::is_control) => Ok(Some(k.clone())),
        Some(_) => Err(TokenError::UnknownKey),
    }
}

/// Whether a token is made of base64url parts and dots only (a JWS in compact form).
fn well_formed(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

#[cfg(test)]
pub(crate) mod tests;
