//! The serde model of gateway.yaml as a whole, for `portcullis schema`. Each section's model
//! (`RawServer`, `RawRoute`, ...) lives beside the code that lowers it (`server.rs`,
//! `routes.rs`, ...); `validate.rs` reads the file section by section and lowers each into the
//! typed [`crate::config::Config`]. Never used past validation.

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

use super::audit::RawAudit;
use super::cors::RawCors;
use super::credentials::{RawApiKeys, RawClientCerts};
use super::identity::RawIdentityProvider;
use super::limits::{RawLockout, RawRateLimits};
use super::logging::{RawLogging, RawMetrics};
use super::passwords::RawPasswords;
use super::providers::{RawChain, RawHealth, RawLlmLimits, RawPrice, RawProvider};
use super::routes::RawRoute;
use super::server::RawServer;
use super::sessions::RawSessions;
use super::store::RawStore;
use super::tokens::RawTokens;
use super::upstreams::RawUpstream;
use super::users::RawUsers;

/// gateway.yaml as a whole. Validation reads it section by section (to report every problem);
/// this type describes the file for `portcullis schema`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Portcullis gateway.yaml")]
#[allow(dead_code)] // describes the file for the schema; validation reads the sections one by one
pub struct RawGatewayFile {
    /// Listeners and Pingora process settings (restart needed to change).
    #[serde(default)]
    pub server: Option<RawServer>,
    /// Where users, sessions and revocations live.
    #[serde(default)]
    pub store: Option<RawStore>,
    /// JWT signing and verification.
    #[serde(default)]
    pub tokens: Option<RawTokens>,
    /// Role name -> level; a higher level inherits everything a lower level may do.
    #[serde(default)]
    pub roles: Option<BTreeMap<String, u32>>,
    /// Resource -> role -> actions.
    #[serde(default)]
    pub permissions: Option<BTreeMap<String, BTreeMap<String, Vec<String>>>>,
    /// Applications behind the gateway, by name.
    #[serde(default)]
    pub upstreams: Option<BTreeMap<String, RawUpstream>>,
    /// First match wins, in file order.
    #[serde(default)]
    pub routes: Option<Vec<RawRoute>>,
    /// The users file and who may manage users.
    #[serde(default)]
    pub users: Option<RawUsers>,
    /// Session lifetimes and failure behaviour.
    #[serde(default)]
    pub sessions: Option<RawSessions>,
    /// Password hashing cost and policy.
    #[serde(default)]
    pub passwords: Option<RawPasswords>,
    /// The /metrics endpoint.
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    /// Log format and level.
    #[serde(default)]
    pub logging: Option<RawLogging>,
    /// Login and API rate limits.
    #[serde(default)]
    pub rate_limits: Option<RawRateLimits>,
    /// Account lockout after failed logins.
    #[serde(default)]
    pub lockout: Option<RawLockout>,
    /// The security audit log.
    #[serde(default)]
    pub audit: Option<RawAudit>,
    /// Cross-origin browser access.
    #[serde(default)]
    pub cors: Option<RawCors>,
    /// LLM providers, by name.
    #[serde(default)]
    pub providers: Option<BTreeMap<String, RawProvider>>,
    /// Ordered fallback chains of providers, by name.
    #[serde(default)]
    pub provider_chains: Option<BTreeMap<String, RawChain>>,
    /// Provider health rules.
    #[serde(default)]
    pub health: Option<RawHealth>,
    /// Token budgets for LLM calls.
    #[serde(default)]
    pub llm_limits: Option<RawLlmLimits>,
    /// Public model -> price per million tokens (adds `portcullis_llm_cost_total`).
    #[serde(default)]
    pub models_pricing: Option<BTreeMap<String, RawPrice>>,
    /// API keys for machine clients.
    #[serde(default)]
    pub api_keys: Option<RawApiKeys>,
    /// Verified TLS client certificates as identities.
    #[serde(default)]
    pub client_certs: Option<RawClientCerts>,
    /// External identity providers, by name.
    #[serde(default)]
    pub identity_providers: Option<BTreeMap<String, RawIdentityProvider>>,
}
