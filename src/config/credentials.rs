//! Lowering of `api_keys:` (the hashing secret from the environment) and `client_certs:` (the
//! map from a certificate to a user and role).

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

use super::{did_you_mean, problem, Problem};
use crate::apikey::KeyHasher;
use crate::auth::keys::ApiKeySettings;
use crate::clientcert::{CertIdentity, CertMap};
use crate::policy::Roles;

/// `api_keys:`: API keys for machine clients.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawApiKeys {
    /// Environment variable holding the secret keys are hashed under (at least 32 bytes).
    pub secret_env: String,
    /// Users may create keys of their own role or lower through `/auth/api-keys`.
    pub self_service: bool,
    /// The most keys one user may hold.
    pub max_per_user: usize,
}

impl Default for RawApiKeys {
    fn default() -> Self {
        RawApiKeys { secret_env: "API_KEY_SECRET".into(), self_service: false, max_per_user: 100 }
    }
}

/// `client_certs:`: verified client certificates as identities.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawClientCerts {
    /// Certificate subject (`CN=build-bot,O=Example`) or SAN URI -> identity.
    pub map: BTreeMap<String, RawCertIdentity>,
}

/// One entry of `client_certs.map`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCertIdentity {
    pub user_id: String,
    pub role: String,
}

const MIN_SECRET_BYTES: usize = 32;

pub(super) fn lower_api_keys(raw: &RawApiKeys, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<ApiKeySettings> {
    if raw.max_per_user == 0 {
        problem(p, "api_keys.max_per_user", "must be at least 1");
    }
    let secret = match env(&raw.secret_env) {
        None => {
            problem(
                p,
                "api_keys.secret_env",
                format!(
                    "environment variable `{}` is not set: it must hold the secret API keys are hashed under (at least {MIN_SECRET_BYTES} bytes)",
                    raw.secret_env
                ),
            );
            return None;
        }
        Some(s) if s.len() < MIN_SECRET_BYTES => {
            problem(
                p,
                "api_keys.secret_env",
                format!("the secret in environment variable `{}` is shorter than {MIN_SECRET_BYTES} bytes", raw.secret_env),
            );
            return None;
        }
        Some(s) => s,
    };
    if raw.max_per_user == 0 {
        return None;
    }
    Some(ApiKeySettings { hasher: KeyHasher::new(secret.as_bytes()), self_service: raw.self_service, max_per_user: raw.max_per_user })
}

pub(super) fn lower_client_certs(raw: &RawClientCerts, roles: &Roles, p: &mut Vec<Problem>) -> CertMap {
    let mut entries = Vec::new();
    for (subject, who) in &raw.map {
        let at = format!("client_certs.map.{subject}");
        if subject.trim().is_empty() {
            problem(p, &at, "a certificate subject or SAN URI cannot be empty");
            continue;
        }
        if !crate::policy::header_word(&who.user_id) {
            problem(p, &format!("{at}.user_id"), "a user id is 1-256 printable ASCII characters without spaces");
            continue;
        }
        if roles.level(&who.role).is_none() {
            problem(p, &format!("{at}.role"), format!("unknown role `{}`{}", who.role, did_you_mean(&who.role, roles.names())));
            continue;
        }
        entries.push((subject.clone(), CertIdentity { user_id: who.user_id.clone(), role: who.role.clone() }));
    }
    CertMap::new(entries)
}
