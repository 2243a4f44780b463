//! Lowering of `tokens:`: the signing secret (from the environment), algorithm, lifetimes, cache.

use std::time::Duration;

use super::raw::RawTokens;
use super::{did_you_mean, problem, Problem};
use crate::auth::tokens::TokenSettings;
use crate::secret::Secret;

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

pub(super) fn lower_tokens(t: &RawTokens, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<TokenSettings> {
    let algorithm = match t.algorithm.as_str() {
        "HS256" => Some(jsonwebtoken::Algorithm::HS256),
        "HS384" => Some(jsonwebtoken::Algorithm::HS384),
        "HS512" => Some(jsonwebtoken::Algorithm::HS512),
        other => {
            problem(
                p,
                "tokens.algorithm",
                format!("unsupported algorithm `{other}`: use HS256, HS384 or HS512{}", did_you_mean(other, ["HS256", "HS384", "HS512"])),
            );
            None
        }
    };
    let secret = match env(&t.secret_env) {
        None => {
            problem(
                p,
                "tokens.secret_env",
                format!(
                    "environment variable `{}` is not set: it must hold the token signing secret (at least {MIN_SECRET_BYTES} bytes)",
                    t.secret_env
                ),
            );
            None
        }
        Some(s) if s.len() < MIN_SECRET_BYTES => {
            problem(
                p,
                "tokens.secret_env",
                format!("the secret in environment variable `{}` is shorter than {MIN_SECRET_BYTES} bytes", t.secret_env),
            );
            None
        }
        Some(s) => Some(Secret::new(s.into_bytes())),
    };
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
    Some(TokenSettings {
        secret: secret?,
        algorithm: algorithm?,
        access_ttl: Duration::from_secs(access_minutes.checked_mul(60)?),
        refresh_ttl: Duration::from_secs(refresh_days.checked_mul(86_400)?),
        leeway_seconds: t.leeway_seconds,
        issuer: t.issuer.clone(),
        audience: t.audience.clone(),
        verify_cache_size: t.verify_cache_size,
    })
}
