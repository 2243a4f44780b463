//! Lowering of `identity_providers:`: external issuers, each checked for a usable URL, its
//! audiences, algorithms, claim paths, role map and refresh bounds.

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

use jsonwebtoken::Algorithm;
use std::time::Duration;

use super::defaults;
use super::{did_you_mean, problem, Problem};
use crate::auth::fetch::{is_loopback, parse_url};
use crate::auth::idp::{ClaimPaths, IdpSettings, JwksRefresh, JwksSource, EXTERNAL_ALGORITHMS};
use crate::policy::Roles;

/// One entry of `identity_providers:`: an external OpenID Connect / OAuth 2 issuer.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityProvider {
    /// Must equal the tokens' `iss` exactly.
    pub issuer: String,
    /// Read `jwks_uri` from `{issuer}/.well-known/openid-configuration` (default: true unless
    /// `jwks_uri` is given).
    #[serde(default)]
    pub discovery: Option<bool>,
    /// The JWKS URL, given directly.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// At least one must be in the token's `aud`.
    pub audiences: Vec<String>,
    /// Any of RS256/384/512, PS256/384/512, ES256/384, EdDSA (default: RS256).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Dotted paths of the claims the identity is read from.
    #[serde(default)]
    pub claims: RawClaimPaths,
    /// Provider role value -> gateway role; the highest mapped role wins.
    #[serde(default)]
    pub role_map: BTreeMap<String, String>,
    /// The role of a token with no mapped role (default: none, such tokens are refused with 403).
    #[serde(default)]
    pub default_role: Option<String>,
    #[serde(default = "defaults::idp_leeway")]
    pub leeway_seconds: u64,
    /// The longest `exp - iat` accepted (default 24 h).
    #[serde(default = "defaults::idp_max_lifetime")]
    pub max_lifetime_minutes: u64,
    #[serde(default)]
    pub jwks: RawJwksRefresh,
}

/// `identity_providers.NAME.claims`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawClaimPaths {
    pub user_id: String,
    pub role: Option<String>,
    pub scopes: Option<String>,
}

impl Default for RawClaimPaths {
    fn default() -> Self {
        RawClaimPaths { user_id: "sub".into(), role: None, scopes: Some("scope".into()) }
    }
}

/// `identity_providers.NAME.jwks`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawJwksRefresh {
    pub min_refresh_seconds: u64,
    pub max_refresh_seconds: u64,
    pub unknown_kid_cooldown_seconds: u64,
}

impl Default for RawJwksRefresh {
    fn default() -> Self {
        RawJwksRefresh { min_refresh_seconds: 60, max_refresh_seconds: 86_400, unknown_kid_cooldown_seconds: 10 }
    }
}

/// An issuer or JWKS URL: https, or http to a loopback host only (keys fetched in clear from
/// another machine could be swapped on the way).
fn url_ok(url: &str, at: &str, p: &mut Vec<Problem>) -> bool {
    match parse_url(url) {
        Ok(u) if u.tls || is_loopback(&u.host) => true,
        Ok(_) => {
            problem(p, at, "must be https:// (http:// only for a loopback host)");
            false
        }
        Err(e) => {
            problem(p, at, e);
            false
        }
    }
}

pub(super) fn lower_identity_providers(
    raw: &BTreeMap<String, RawIdentityProvider>,
    roles: &Roles,
    p: &mut Vec<Problem>,
) -> Vec<IdpSettings> {
    let mut out: Vec<IdpSettings> = Vec::new();
    for (name, r) in raw {
        let at = |k: &str| format!("identity_providers.{name}.{k}");
        let before = p.len();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            problem(p, &format!("identity_providers.{name}"), "a provider name is letters, digits, `-` and `_`");
        }
        if url_ok(&r.issuer, &at("issuer"), p) {
            if let Some(other) = out.iter().find(|o| o.issuer == r.issuer) {
                problem(p, &at("issuer"), format!("the same issuer as `{}`", other.name));
            }
        }
        let source = match (&r.jwks_uri, r.discovery) {
            (Some(uri), Some(true)) => {
                problem(p, &at("jwks_uri"), "give `jwks_uri` or `discovery: true`, not both");
                JwksSource::Direct(uri.clone())
            }
            (Some(uri), _) => {
                url_ok(uri, &at("jwks_uri"), p);
                JwksSource::Direct(uri.clone())
            }
            (None, Some(false)) => {
                problem(p, &at("jwks_uri"), "without discovery the provider's `jwks_uri` is required");
                JwksSource::Direct(String::new())
            }
            (None, _) => JwksSource::Discovery(format!("{}/.well-known/openid-configuration", r.issuer.trim_end_matches('/'))),
        };
        if r.audiences.is_empty() || r.audiences.iter().any(String::is_empty) {
            problem(p, &at("audiences"), "list at least one audience (the token's `aud` must name one of them)");
        }
        let names: Vec<String> = r.algorithms.clone().unwrap_or_else(|| vec!["RS256".into()]);
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for (i, a) in names.iter().enumerate() {
            match EXTERNAL_ALGORITHMS.iter().find(|(n, _)| n == a) {
                Some((_, alg)) => algorithms.push(*alg),
                None => problem(
                    p,
                    &format!("{}[{i}]", at("algorithms")),
                    format!(
                        "`{a}` is not accepted from a provider: use RS256/384/512, PS256/384/512, ES256/384 or EdDSA{}",
                        did_you_mean(a, EXTERNAL_ALGORITHMS.iter().map(|(n, _)| *n))
                    ),
                ),
            }
        }
        if algorithms.is_empty() && names.is_empty() {
            problem(p, &at("algorithms"), "list at least one algorithm");
        }
        for (from, to) in &r.role_map {
            if roles.level(to).is_none() {
                problem(p, &format!("{}.{from}", at("role_map")), format!("unknown role `{to}`{}", did_you_mean(to, roles.names())));
            }
        }
        if let Some(d) = &r.default_role {
            if roles.level(d).is_none() {
                problem(p, &at("default_role"), format!("unknown role `{d}`{}", did_you_mean(d, roles.names())));
            }
        }
        if r.claims.user_id.is_empty() {
            problem(p, &at("claims.user_id"), "name the claim the user id is read from (like `sub`)");
        }
        let j = &r.jwks;
        for (k, v) in [
            ("min_refresh_seconds", j.min_refresh_seconds),
            ("max_refresh_seconds", j.max_refresh_seconds),
            ("unknown_kid_cooldown_seconds", j.unknown_kid_cooldown_seconds),
        ] {
            if v < 1 {
                problem(p, &at(&format!("jwks.{k}")), "must be at least 1");
            }
        }
        if j.min_refresh_seconds > j.max_refresh_seconds {
            problem(p, &at("jwks.min_refresh_seconds"), "must not be above `max_refresh_seconds`");
        }
        if r.max_lifetime_minutes == 0 {
            problem(p, &at("max_lifetime_minutes"), "must be at least 1");
        }
        if p.len() > before {
            continue;
        }
        out.push(IdpSettings {
            name: name.clone(),
            issuer: r.issuer.clone(),
            source,
            audiences: r.audiences.clone(),
            algorithms,
            claims: ClaimPaths { user_id: r.claims.user_id.clone(), role: r.claims.role.clone(), scopes: r.claims.scopes.clone() },
            role_map: r.role_map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            default_role: r.default_role.clone(),
            leeway_seconds: r.leeway_seconds,
            max_lifetime: Duration::from_secs(r.max_lifetime_minutes * 60),
            refresh: JwksRefresh {
                min: Duration::from_secs(j.min_refresh_seconds),
                max: Duration::from_secs(j.max_refresh_seconds),
                unknown_kid_cooldown: Duration::from_secs(j.unknown_kid_cooldown_seconds),
            },
        });
    }
    out
}
