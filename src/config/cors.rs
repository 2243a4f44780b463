//! Lowering of `cors:`: allowed origins, methods and headers.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{problem, Problem};
use crate::cors::CorsPolicy;

/// `cors:`: browser access from other origins; preflights are answered by the gateway.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawCors {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age_seconds: u64,
}

impl Default for RawCors {
    fn default() -> Self {
        RawCors {
            allowed_origins: Vec::new(),
            allowed_methods: ["GET", "POST", "PUT", "PATCH", "DELETE"].map(String::from).to_vec(),
            allowed_headers: ["authorization", "content-type"].map(String::from).to_vec(),
            allow_credentials: false,
            max_age_seconds: 600,
        }
    }
}

pub(super) fn lower_cors(raw: &RawCors, p: &mut Vec<Problem>) -> Option<CorsPolicy> {
    if raw.allowed_origins.is_empty() {
        problem(p, "cors.allowed_origins", "list at least one origin (or remove `cors`)");
        return None;
    }
    let wildcard = raw.allowed_origins.iter().any(|o| o == "*");
    if wildcard && raw.allow_credentials {
        problem(p, "cors.allow_credentials", "a wildcard origin (`*`) cannot be combined with credentials: list the origins");
        return None;
    }
    for (i, o) in raw.allowed_origins.iter().enumerate() {
        if o != "*" && !(o.starts_with("https://") || o.starts_with("http://")) {
            problem(p, &format!("cors.allowed_origins[{i}]"), "an origin is scheme://host[:port], like https://app.example.com");
        }
    }
    Some(CorsPolicy {
        origins: raw.allowed_origins.clone(),
        methods: raw.allowed_methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
        headers: raw.allowed_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        credentials: raw.allow_credentials,
        max_age_seconds: raw.max_age_seconds,
    })
}
