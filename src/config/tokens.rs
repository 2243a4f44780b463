//! Lowering of `tokens:`: the key ring (secrets from the environment, private keys from files
//! only their owner may read), algorithm, lifetimes, cache.

use schemars::JsonSchema;
use serde::Deserialize;

use jsonwebtoken::Algorithm;
use std::path::Path;
use std::time::Duration;

use super::{did_you_mean, problem, Problem};
use crate::auth::tokens::{RingKey, TokenSettings};
use crate::secret::Secret;

/// `tokens:`: how JWTs are signed and checked. The secret itself only ever comes from the
/// environment variable named here.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokens {
    pub secret_env: String,
    pub algorithm: String,
    pub access_ttl_minutes: u64,
    pub refresh_ttl_days: u64,
    pub leeway_seconds: u64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Verified access tokens remembered so repeat requests skip signature verification
    /// (0 turns the cache off).
    pub verify_cache_size: usize,
    /// A key ring: the first key signs, every listed key verifies (replaces `secret_env`).
    pub keys: Option<Vec<RawTokenKey>>,
    /// The longest lifetime (`exp - iat`) an access token may claim; default: the access TTL
    /// plus the leeway.
    pub max_lifetime_minutes: Option<u64>,
}

/// One key of `tokens.keys`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTokenKey {
    /// The key id (`kid` in the tokens it signs).
    pub id: Option<String>,
    /// ES256/EdDSA: a PKCS#8 PEM private key file (mode 0600), relative to gateway.yaml.
    pub private_key_file: Option<String>,
    /// HS256/384/512: the environment variable holding the secret.
    pub secret_env: Option<String>,
}

impl Default for RawTokens {
    fn default() -> Self {
        RawTokens {
            secret_env: "JWT_SECRET_KEY".into(),
            algorithm: "HS256".into(),
            access_ttl_minutes: 15,
            refresh_ttl_days: 7,
            leeway_seconds: 0,
            issuer: None,
            audience: None,
            verify_cache_size: 4096,
            keys: None,
            max_lifetime_minutes: None,
        }
    }
}

const MIN_SECRET_BYTES: usize = 32;

pub(super) fn env_number(env: &dyn Fn(&str) -> Option<String>, var: &str, path: &str, p: &mut Vec<Problem>) -> Option<u64> {
    let text = env(var)?;
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            problem(p, path, format!("environment variable `{var}` must be a whole number greater than 0"));
            None
        }
    }
}

/// The largest `tokens.verify_cache_size` accepted (about 1 GiB of tokens at worst).
pub(super) const MAX_VERIFY_CACHE: usize = 1_000_000;

pub(super) fn lower_tokens(
    t: &RawTokens,
    source: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Vec<Problem>,
) -> Option<TokenSettings> {
    const ALGORITHMS: [&str; 5] = ["HS256", "HS384", "HS512", "ES256", "EdDSA"];
    let algorithm = match t.algorithm.as_str() {
        "HS256" => Some(Algorithm::HS256),
        "HS384" => Some(Algorithm::HS384),
        "HS512" => Some(Algorithm::HS512),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        other => {
            problem(
                p,
                "tokens.algorithm",
                format!("unsupported algorithm `{other}`: use HS256, HS384, HS512, ES256 or EdDSA{}", did_you_mean(other, ALGORITHMS)),
            );
            None
        }
    };
    let keys = algorithm.and_then(|alg| ring(t, alg, source, env, p));
    let access_minutes = env_number(env, "ACCESS_TOKEN_EXPIRE_MINUTES", "tokens.access_ttl_minutes", p).unwrap_or(t.access_ttl_minutes);
    let refresh_days = env_number(env, "REFRESH_TOKEN_EXPIRE_DAYS", "tokens.refresh_ttl_days", p).unwrap_or(t.refresh_ttl_days);
    if access_minutes == 0 {
        problem(p, "tokens.access_ttl_minutes", "the access token lifetime must be at least 1 minute");
    }
    if t.verify_cache_size > MAX_VERIFY_CACHE {
        // Each entry holds a token of up to 1 KiB: bound the memory an operator's typo can take.
        problem(p, "tokens.verify_cache_size", format!("at most {MAX_VERIFY_CACHE} verified tokens can be cached (0 turns the cache off)"));
    }
    if refresh_days == 0 {
        problem(p, "tokens.refresh_ttl_days", "the refresh token lifetime must be at least 1 day");
    }
    let access_ttl = Duration::from_secs(access_minutes.checked_mul(60)?);
    let max_lifetime = match t.max_lifetime_minutes {
        Some(0) => {
            problem(p, "tokens.max_lifetime_minutes", "must be at least 1");
            return None;
        }
        Some(m) if m.saturating_mul(60) < access_ttl.as_secs() => {
            problem(p, "tokens.max_lifetime_minutes", "must be at least `access_ttl_minutes`: the gateway's own tokens would be refused");
            return None;
        }
        Some(m) => Duration::from_secs(m.checked_mul(60)?),
        None => access_ttl + Duration::from_secs(t.leeway_seconds),
    };
    Some(TokenSettings {
        keys: keys?,
        algorithm: algorithm?,
        access_ttl,
        refresh_ttl: Duration::from_secs(refresh_days.checked_mul(86_400)?),
        leeway_seconds: t.leeway_seconds,
        issuer: t.issuer.clone(),
        audience: t.audience.clone(),
        verify_cache_size: t.verify_cache_size,
        max_lifetime,
    })
}

/// An HMAC secret from the environment variable `var`, checked; `path` locates problems.
fn secret_from(env: &dyn Fn(&str) -> Option<String>, var: &str, path: &str, p: &mut Vec<Problem>) -> Option<Secret> {
    match env(var) {
        None => {
            problem(
                p,
                path,
                format!(
                    "environment variable `{var}` is not set: it must hold the token signing secret (at least {MIN_SECRET_BYTES} bytes)"
                ),
            );
            None
        }
        Some(s) if s.len() < MIN_SECRET_BYTES => {
            problem(p, path, format!("the secret in environment variable `{var}` is shorter than {MIN_SECRET_BYTES} bytes"));
            None
        }
        Some(s) => Some(Secret::new(s.into_bytes())),
    }
}

/// The key ring: `tokens.keys`, or (HMAC only) `secret_env` as a ring of one key without an id.
fn ring(t: &RawTokens, alg: Algorithm, source: &Path, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<Vec<RingKey>> {
    let hmac = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    let Some(raw) = &t.keys else {
        if !hmac {
            problem(p, "tokens.keys", format!("{alg:?} signs with private keys: list them under `tokens.keys` with `private_key_file`"));
            return None;
        }
        return Some(vec![RingKey::hmac(None, &secret_from(env, &t.secret_env, "tokens.secret_env", p)?)]);
    };
    if raw.is_empty() {
        problem(p, "tokens.keys", "a key ring needs at least one key (the first signs)");
        return None;
    }
    let dir = source.parent().unwrap_or(Path::new("."));
    let mut ids = std::collections::HashSet::new();
    let mut anonymous = 0;
    let mut out = Vec::new();
    for (i, k) in raw.iter().enumerate() {
        let at = |key: &str| format!("tokens.keys[{i}].{key}");
        match &k.id {
            Some(id) if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) => {
                problem(p, &at("id"), "a key id is 1-64 printable ASCII characters without spaces");
                continue;
            }
            Some(id) if !ids.insert(id.clone()) => {
                problem(p, &at("id"), format!("key id `{id}` is listed twice"));
                continue;
            }
            Some(_) => {}
            None => anonymous += 1,
        }
        let key = match (hmac, &k.secret_env, &k.private_key_file) {
            (true, Some(var), None) => secret_from(env, var, &at("secret_env"), p).map(|s| RingKey::hmac(k.id.clone(), &s)),
            (false, None, Some(file)) => private_key(&dir.join(file), k.id.clone(), alg, &at("private_key_file"), p),
            (true, _, _) => {
                problem(
                    p,
                    &format!("tokens.keys[{i}]"),
                    format!("{alg:?} keys are secrets: give `secret_env` (and no `private_key_file`)"),
                );
                None
            }
            (false, _, _) => {
                problem(
                    p,
                    &format!("tokens.keys[{i}]"),
                    format!("{alg:?} keys are private key files: give `private_key_file` (and no `secret_env`)"),
                );
                None
            }
        };
        out.extend(key);
    }
    if anonymous > 1 {
        problem(p, "tokens.keys", "at most one key may go without an `id` (it verifies tokens that carry no `kid`)");
        return None;
    }
    (out.len() == raw.len()).then_some(out)
}

/// An asymmetric private key from a PEM file that only its owner may read.
fn private_key(path: &Path, id: Option<String>, alg: Algorithm, at: &str, p: &mut Vec<Problem>) -> Option<RingKey> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            problem(p, at, format!("cannot read `{}`: {e}", path.display()));
            return None;
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            problem(p, at, format!("`{}` has mode {mode:o}: a private key must be readable by its owner only (chmod 600)", path.display()));
            return None;
        }
    }
    let pem = match std::fs::read(path) {
        Ok(b) => crate::secret::Secret::new(b),
        Err(e) => {
            problem(p, at, format!("cannot read `{}`: {e}", path.display()));
            return None;
        }
    };
    RingKey::from_pem(id, pem.expose(), alg).map_err(|why| problem(p, at, format!("`{}`: {why}", path.display()))).ok()
}
