//! The serde model of gateway.yaml, exactly as operators write it. Never used past validation:
//! `validate.rs` lowers it into the typed [`crate::config::Config`].

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `server:`: listeners and Pingora's own process settings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub admin_listen: String,
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub pid_file: String,
    pub upgrade_sock: String,
    pub upstream_keepalive_pool_size: usize,
    /// Proxies whose `X-Forwarded-For` is believed (IPs or CIDRs); nobody's by default.
    pub trusted_proxies: Vec<String>,
    /// Requests whose header section is larger get 431.
    pub max_header_bytes: usize,
    /// Requests with more header fields get 431.
    pub max_header_count: usize,
    /// A request's whole header section must arrive within this (408 and close otherwise),
    /// whatever pace its bytes come at.
    pub header_timeout_ms: u64,
    /// Open client connections, in total (0 = no cap); more are closed at accept.
    pub max_connections: usize,
    /// Open client connections from one peer address (0 = no cap); more are closed at accept.
    pub max_connections_per_ip: usize,
    /// New client connections one peer address may open per second, with a burst of as many
    /// (0 = no limit); more are closed at accept, before a task is spawned for them.
    pub max_new_connections_per_ip_per_second: u32,
    /// TLS termination on `listen` (HTTP/2 via ALPN).
    pub tls: Option<RawTls>,
}

/// `server.tls:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain file.
    pub cert: String,
    /// PEM private key file.
    pub key: String,
    /// `"1.3"` (default) or `"1.2"`.
    #[serde(default = "defaults::tls_min")]
    pub min_version: String,
    /// Mutual TLS: client certificates signed by `ca`.
    #[serde(default)]
    pub client_auth: Option<RawClientAuth>,
}

/// `server.tls.client_auth:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    /// PEM file of the CA (or CAs) client certificates must be signed by.
    pub ca: String,
    /// `required`: no handshake without a valid certificate; `optional`: a certificate is
    /// verified if sent, and routes may say `require_client_cert: true`.
    pub mode: String,
}

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

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9901".into(),
            threads: 2,
            grace_period_seconds: 5,
            graceful_shutdown_timeout_seconds: 10,
            pid_file: "/tmp/portcullis.pid".into(),
            upgrade_sock: "/tmp/portcullis_upgrade.sock".into(),
            upstream_keepalive_pool_size: 128,
            trusted_proxies: Vec::new(),
            max_header_bytes: 32 * 1024,
            max_header_count: 100,
            header_timeout_ms: 10_000,
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_new_connections_per_ip_per_second: 0,
            tls: None,
        }
    }
}

/// `store:`: where sessions, revocations and limits live.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub backend: String,
    /// A standalone server (kept for configs written before `redis:`).
    pub redis_url: Option<String>,
    /// Which Redis deployment, and where.
    pub redis: Option<RawRedis>,
    pub key_prefix: String,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore { backend: "memory".into(), redis_url: None, redis: None, key_prefix: "portcullis:".into() }
    }
}

/// `store.redis:`: a standalone server, a Sentinel-managed master, or a Cluster.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    /// `standalone`, `sentinel` or `cluster`.
    pub mode: String,
    /// standalone: `redis://host:port/db` (or `rediss://`, `redis+unix:///path`).
    pub url: Option<String>,
    /// sentinel: the sentinels' `host:port` addresses.
    pub sentinels: Vec<String>,
    /// sentinel: the name the sentinels monitor the master under.
    pub master_name: Option<String>,
    /// sentinel: the database number on the master.
    pub db: i64,
    /// cluster: seed nodes' `host:port` addresses (the rest are discovered).
    pub nodes: Vec<String>,
    /// The environment variable holding the ACL user name.
    pub username_env: Option<String>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// TLS to every node and sentinel.
    pub tls: bool,
}

impl Default for RawRedis {
    fn default() -> Self {
        RawRedis {
            mode: "standalone".into(),
            url: None,
            sentinels: Vec::new(),
            master_name: None,
            db: 0,
            nodes: Vec::new(),
            username_env: None,
            password_env: None,
            tls: false,
        }
    }
}

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

/// `users:`: the users file and who may manage users.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawUsers {
    pub file: Option<String>,
    pub admin_role: String,
}

impl Default for RawUsers {
    fn default() -> Self {
        RawUsers { file: None, admin_role: "admin".into() }
    }
}

/// One entry of the users file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFileUser {
    pub id: String,
    pub email: String,
    pub role: String,
    pub password_hash: String,
}

/// The users file: `users: [ ... ]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawUsersFile {
    #[serde(default)]
    pub users: Vec<serde_yaml::Value>,
}

/// `sessions:`: lifetimes and failure behaviour.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawSessions {
    pub idle_timeout_minutes: u64,
    pub absolute_timeout_hours: u64,
    pub on_store_outage: String,
    pub on_role_change: String,
    pub activity_flush_seconds: u64,
    /// End a provider stream when the access token it started with expires.
    pub end_streams_at_expiry: bool,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            idle_timeout_minutes: 30,
            absolute_timeout_hours: 168,
            on_store_outage: "serve_cached".into(),
            on_role_change: "refresh".into(),
            activity_flush_seconds: 5,
            end_streams_at_expiry: false,
        }
    }
}

/// `passwords:`: argon2id cost, the policy for new passwords, hashing concurrency.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawPasswords {
    pub min_length: usize,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub max_concurrent: usize,
    pub max_queue: usize,
}

impl Default for RawPasswords {
    fn default() -> Self {
        let d = crate::auth::passwords::PasswordSettings::default();
        RawPasswords {
            min_length: d.min_length,
            memory_kib: d.memory_kib,
            iterations: d.iterations,
            parallelism: d.parallelism,
            max_concurrent: d.max_concurrent,
            max_queue: d.max_queue,
        }
    }
}

/// `metrics:`: whether the admin listener serves /metrics (and the request path records them).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub enabled: bool,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics { enabled: true }
    }
}

/// `logging:`: log format and level (`RUST_LOG` overrides the level).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogging {
    pub format: String,
    pub level: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging { format: "text".into(), level: "info".into() }
    }
}

/// `requests` per `per_seconds`.
#[derive(Debug, Deserialize, JsonSchema, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    pub requests: u64,
    pub per_seconds: u64,
}

/// `rate_limits.login:`.
#[derive(Debug, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawLoginLimits {
    pub per_ip: Option<RawLimit>,
    pub per_account: Option<RawLimit>,
}

/// `rate_limits.api:`.
#[derive(Debug, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawApiLimits {
    pub per_user: Option<RawLimit>,
    pub per_ip_public: Option<RawLimit>,
}

/// `rate_limits:`: nothing is limited unless configured here.
#[derive(Debug, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimits {
    pub login: RawLoginLimits,
    pub api: RawApiLimits,
    /// Named limits that routes refer to with `rate_limit: NAME`.
    pub routes: BTreeMap<String, RawLimit>,
}

/// `lockout:`: failed logins lock an account, doubling each time, reset by a success.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawLockout {
    pub after_failures: u32,
    pub base_seconds: u64,
    pub max_seconds: u64,
}

impl Default for RawLockout {
    fn default() -> Self {
        RawLockout { after_failures: 5, base_seconds: 60, max_seconds: 3600 }
    }
}

/// `audit:`: the security audit log.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// `stdout`, `file`, `redis` or `none`.
    pub sink: String,
    /// For `sink: file`.
    pub file: Option<String>,
    /// For `sink: redis` (default: the store's Redis).
    pub redis_url: Option<String>,
    pub stream: String,
    pub max_len: u64,
    pub queue_size: usize,
    /// Fraction of granted-access events kept, 0.0 to 1.0.
    pub sample_granted: f64,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            sink: "stdout".into(),
            file: None,
            redis_url: None,
            stream: "portcullis:audit".into(),
            max_len: 100_000,
            queue_size: 65_536,
            sample_granted: 1.0,
        }
    }
}

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

/// `roles:`: role name -> level (a missing level is reported, not defaulted).
pub type RawRoles = BTreeMap<String, Option<i64>>;

/// `permissions.<resource>:`: role -> actions.
pub type RawGrants = BTreeMap<String, Option<Vec<String>>>;

/// `upstreams.<name>:`: an application behind the gateway.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: String,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "defaults::read_timeout_ms")]
    pub read_timeout_ms: u64,
    #[serde(default = "defaults::write_timeout_ms")]
    pub write_timeout_ms: u64,
    #[serde(default = "defaults::idle_timeout_seconds")]
    pub idle_timeout_seconds: u64,
    #[serde(default = "defaults::yes")]
    pub tls_verify: bool,
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default)]
    pub forward_authorization: bool,
    #[serde(default)]
    pub rewrite_host: bool,
    /// Add the gateway's security headers to this upstream's responses (where it set none).
    #[serde(default = "defaults::yes")]
    pub security_headers: bool,
    /// Add `X-Portcullis-Assertion`: a 60 s JWT signed with the gateway's current asymmetric
    /// key, naming this upstream as its audience.
    #[serde(default)]
    pub identity_assertion: bool,
}

/// One entry of `routes:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub public: Option<bool>,
    #[serde(default)]
    pub require_role: Option<String>,
    #[serde(default)]
    pub permission: Option<String>,
    #[serde(default)]
    pub upstream: Option<String>,
    /// A limit from `rate_limits.routes` for this route (per user, or per IP when public).
    #[serde(default)]
    pub rate_limit: Option<String>,
    /// A provider chain from `provider_chains` (instead of `upstream`).
    #[serde(default)]
    pub chain: Option<String>,
    /// Scopes a scope-limited credential (an API key made with scopes) must all hold.
    #[serde(default)]
    pub require_scopes: Vec<String>,
    /// Only for clients with a verified TLS certificate (`server.tls.client_auth`).
    #[serde(default)]
    pub require_client_cert: bool,
}

/// How a provider's API key is sent: `bearer`, `none`, or `{ header: NAME }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawAuth {
    Kind(String),
    Header(RawAuthHeader),
}

/// `auth: { header: x-api-key }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuthHeader {
    pub header: String,
}

/// `providers.NAME.health_check:`: a cheap probe (never a billed completion).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawHealthCheck {
    pub path: String,
    pub method: String,
    pub interval_seconds: u64,
    pub timeout_ms: u64,
}

impl Default for RawHealthCheck {
    fn default() -> Self {
        RawHealthCheck { path: "/v1/models".into(), method: "GET".into(), interval_seconds: 300, timeout_ms: 2000 }
    }
}

/// `providers.NAME:`: an LLM provider.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub url: String,
    /// The API it speaks: `openai` (default; OpenAI-compatible) or `anthropic` (Messages API:
    /// OpenAI chat requests are translated, its key goes in `x-api-key`).
    #[serde(default = "defaults::api")]
    pub api: String,
    /// The environment variable holding the API key (keys never live in the file).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub health_check: Option<RawHealthCheck>,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Waiting for the response header (a timeout fails over).
    #[serde(default = "defaults::read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// Waiting for the response header, if other than `read_timeout_ms` (a timeout fails over).
    #[serde(default)]
    pub first_byte_timeout_ms: Option<u64>,
    /// Public model name -> this provider's name for it; a provider without it passes the
    /// client's model name through.
    #[serde(default)]
    pub models: Option<BTreeMap<String, String>>,
    /// The longest gap between two chunks of the response body (default `read_timeout_ms`);
    /// exceeded, the stream is ended and the provider recorded as failed.
    #[serde(default)]
    pub stream_idle_timeout_ms: Option<u64>,
    #[serde(default = "defaults::yes")]
    pub tls_verify: bool,
}

/// `llm_limits:`: token budgets per user, enforced before a request starts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLlmLimits {
    /// Every role's limits unless `roles` says otherwise.
    #[serde(default)]
    pub default: RawTokenLimits,
    /// Role -> limits overlaid on the default.
    #[serde(default)]
    pub roles: BTreeMap<String, RawTokenLimits>,
    /// Completion tokens reserved when a request names no `max_tokens`.
    #[serde(default = "defaults::reserve_tokens")]
    pub reserve_tokens: u64,
}

impl Default for RawLlmLimits {
    fn default() -> Self {
        RawLlmLimits { default: RawTokenLimits::default(), roles: BTreeMap::new(), reserve_tokens: defaults::reserve_tokens() }
    }
}

/// One role's token limits.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTokenLimits {
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
    /// No token limit at all.
    #[serde(default)]
    pub unlimited: bool,
}

/// `models_pricing.MODEL:`: what a model's tokens cost (for `portcullis_llm_cost_total`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub prompt_per_million: f64,
    pub completion_per_million: f64,
}

/// `provider_chains.NAME:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawChain {
    pub primary: String,
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// `config` (default) or `latency`: the order inside each health class.
    #[serde(default = "defaults::order")]
    pub order: String,
    /// Response statuses that fail over (before any byte reaches the client).
    #[serde(default = "defaults::failover_on")]
    pub failover_on: Vec<u16>,
    /// Request bodies up to this size are buffered so they can be resent; larger ones stream
    /// to one provider and are not retried.
    #[serde(default = "defaults::max_retry_body_bytes")]
    pub max_retry_body_bytes: usize,
}

/// `health:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawHealth {
    pub failure_threshold: u32,
    pub unhealthy_seconds: u64,
    pub degraded_latency_ms: u64,
    /// A provider degraded by failures is tried again in its place after this long without a
    /// new failure.
    pub degraded_seconds: u64,
    /// Trial requests (across every instance) a provider gets when its unhealthy period ends.
    pub half_open_trials: u32,
    /// A failed trial starts a period this many times longer than the one before...
    pub unhealthy_backoff: f64,
    /// ...up to this long.
    pub max_unhealthy_seconds: u64,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            failure_threshold: 3,
            unhealthy_seconds: 300,
            degraded_latency_ms: 2000,
            degraded_seconds: 30,
            half_open_trials: 1,
            unhealthy_backoff: 2.0,
            max_unhealthy_seconds: 3600,
        }
    }
}

mod defaults {
    pub fn connect_timeout_ms() -> u64 {
        2_000
    }
    pub fn read_timeout_ms() -> u64 {
        60_000
    }
    pub fn write_timeout_ms() -> u64 {
        60_000
    }
    pub fn idle_timeout_seconds() -> u64 {
        60
    }
    pub fn yes() -> bool {
        true
    }
    pub fn api() -> String {
        "openai".into()
    }
    pub fn reserve_tokens() -> u64 {
        1024
    }
    pub fn idp_leeway() -> u64 {
        30
    }

    pub fn idp_max_lifetime() -> u64 {
        24 * 60
    }

    pub fn tls_min() -> String {
        "1.3".into()
    }
    pub fn order() -> String {
        "config".into()
    }
    pub fn failover_on() -> Vec<u16> {
        vec![429, 500, 502, 503, 504]
    }
    pub fn max_retry_body_bytes() -> usize {
        1024 * 1024
    }
}

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
