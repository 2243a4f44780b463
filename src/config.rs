//! gateway.yaml: parsed strictly, validated completely, lowered into a typed [`Config`].
//!
//! Config assembles: each settings type lives with the module that uses it (`TokenSettings` in
//! `auth::tokens`, `StoreSettings` in `store`, ...), and only `main`, `app` and `reload` import
//! this module.
//!
//! Every problem is collected before failing and reported as `FILE:LINE:COL: key.path: message`.
//! Unknown keys are errors with a did-you-mean. No error ever repeats a value from the file or
//! the environment: either may hold a secret.

mod audit;
mod cors;
mod credentials;
mod defaults;
mod identity;
mod lenient;
mod limits;
pub mod locate;
mod logging;
mod passwords;
mod providers;
mod raw;
mod roles;
mod routes;
mod server;
mod sessions;
mod store;
mod tokens;
mod upstreams;
mod users;
mod validate;

pub use server::TlsListen;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::audit::AuditSettings;
use crate::auth::passwords::PasswordSettings;
use crate::auth::sessions::SessionSettings;
use crate::auth::tokens::TokenSettings;
use crate::auth::users::UserSettings;
use crate::clientip::Cidr;
use crate::cors::CorsPolicy;
use crate::limits::LockoutPolicy;
use crate::logging::LoggingSettings;
use crate::policy::Policy;
use crate::providers::{Chain, Provider};
use crate::proxy::upstream::Upstream;
use crate::ratelimit::RateLimitSettings;
use crate::store::StoreSettings;
use locate::Locations;

/// A validated gateway configuration.
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub tokens: TokenSettings,
    pub policy: Policy,
    pub upstreams: Vec<Upstream>,
    pub users: UserSettings,
    pub sessions: SessionSettings,
    pub passwords: PasswordSettings,
    pub metrics_enabled: bool,
    pub logging: LoggingSettings,
    pub rate_limits: RateLimitSettings,
    /// Named route limits are resolved into the routes; these are the rest.
    pub lockout: Option<LockoutPolicy>,
    pub audit: AuditSettings,
    pub cors: Option<CorsPolicy>,
    pub providers: Vec<Provider>,
    pub chains: Vec<Chain>,
    pub health: crate::providers::health::Rules,
    /// None: API keys are not enabled.
    pub api_keys: Option<crate::auth::keys::ApiKeySettings>,
    pub client_certs: crate::clientcert::CertMap,
    /// The limits of `rate_limits.routes`, by name (API keys name them too).
    pub named_limits: std::collections::HashMap<String, crate::limits::Limit>,
    /// External identity providers (`identity_providers`).
    pub identity_providers: Vec<crate::auth::idp::IdpSettings>,
    /// Model access, token budgets and prices for LLM calls.
    pub llm: crate::providers::LlmSettings,
}

/// Listeners and Pingora process settings (changing these needs a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub threads: usize,
    pub grace_period_seconds: u64,
    pub graceful_shutdown_timeout_seconds: u64,
    pub pid_file: String,
    pub upgrade_sock: String,
    pub upstream_keepalive_pool_size: usize,
    pub trusted_proxies: Vec<Cidr>,
    pub max_header_bytes: usize,
    pub max_header_count: usize,
    /// The deadline for a request's whole header section.
    pub header_timeout: std::time::Duration,
    /// Caps on open client connections (0 = none).
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// New connections per peer address per second (0 = no limit).
    pub max_new_connections_per_ip_per_second: u32,
    pub tls: Option<TlsListen>,
}

/// Where in the file a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// At a key (unknown keys, things about the key itself).
    Key(String),
    /// At the value of a key path.
    Value(String),
}

impl Where {
    /// The dotted key path.
    pub fn path(&self) -> &str {
        match self {
            Where::Key(p) | Where::Value(p) => p,
        }
    }
}

/// One thing wrong with a config, before it is given a line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub place: Where,
    pub message: String,
}

impl Problem {
    /// A problem at `place`.
    pub fn new(place: Where, message: impl Into<String>) -> Self {
        Problem { place, message: message.into() }
    }
}

/// Records a problem with the value at the dotted key `path`: the one helper every section uses.
fn problem(p: &mut Vec<Problem>, path: &str, message: impl Into<String>) {
    p.push(Problem::new(Where::Value(path.into()), message));
}

/// A located problem: `FILE:LINE:COL: path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
        } else {
            write!(f, "{}:{}:{}: {}: {}", self.file, self.line, self.col, self.path, self.message)
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a config file, taking secrets and overrides from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Diagnostic {
            file: path.display().to_string(),
            line: 1,
            col: 1,
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    parse(&text, path, &|name| std::env::var(name).ok())
}

/// Validates config text; `env` looks up environment variables (injected for tests).
pub fn parse(text: &str, source: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
    let value = parse_yaml(text, source).map_err(|d| ConfigErrors(vec![d]))?;
    let mut other_files = Vec::new();
    validate::validate(value, source, env, &mut other_files).map_err(|problems| {
        let mut all = locate(text, source, problems);
        all.extend(other_files);
        ConfigErrors(all)
    })
}

/// Parses YAML text into a value, or one located syntax error.
fn parse_yaml(text: &str, source: &Path) -> Result<serde_yaml::Value, Diagnostic> {
    serde_yaml::from_str(text).map_err(|e| {
        let (line, col) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
        let message = e.to_string();
        // serde_yaml appends " at line L column C"; the prefix already says where.
        let message = message.split(" at line ").next().unwrap_or(&message).to_string();
        Diagnostic { file: source.display().to_string(), line, col, path: String::new(), message: format!("invalid YAML: {message}") }
    })
}

/// Gives each problem its line and column in `text`, sorted by position.
fn locate(text: &str, source: &Path, problems: Vec<Problem>) -> Vec<Diagnostic> {
    let file = source.display().to_string();
    let locations = Locations::index(text);
    let mut out: Vec<Diagnostic> = problems
        .into_iter()
        .map(|p| {
            let pos = match &p.place {
                Where::Key(path) => locations.key(path),
                Where::Value(path) => locations.value(path),
            };
            Diagnostic { file: file.clone(), line: pos.line, col: pos.col, path: p.place.path().to_string(), message: p.message }
        })
        .collect();
    out.sort_by_key(|d| (d.line, d.col));
    out.dedup();
    out
}

/// The JSON Schema of gateway.yaml, for editors (completion and validation).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(raw::RawGatewayFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

/// ` (did you mean `x`?)` for the closest candidate, or nothing if none is close.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let best = candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min();
    match best {
        Some((_, c)) => format!(" (did you mean `{c}`?)"),
        None => String::new(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
