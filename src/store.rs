//! Shared state, split by role: users, sessions and revocations, rate-limit counters, provider
//! health, API keys and the denylist, the audit stream. Each role is a trait of its own, handed to the one part of the gateway that needs it
//! (the session machinery, the limiter, the provider tracker); two real backends implement them
//! all: [`memory::MemoryStore`] (embedded, one instance) and [`redis::RedisStore`] (any number of
//! instances).
//!
//! The store is never awaited on the proxied request path: proxied requests consult local views
//! (revocations, limit windows, provider health) that background tasks keep in step with it.
//! It knows nothing of what it stores beyond keys, numbers and opaque JSON.

pub mod memory;
pub mod redis;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::limits::{Decision, Flush, Limit, LockoutPolicy, LockoutState};
use crate::llm::budget::Window;
use crate::secret::redact_url;

/// Batches of revoked sessions, as they are announced.
pub type RevocationNotices = BoxStream<'static, Vec<(String, u64)>>;

/// A user known to the store (created through the admin API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub role: String,
    /// An argon2 PHC string; never serialized into an API answer (see `auth::api`).
    pub password_hash: String,
    pub created_at: u64,
}

/// One login on one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub created_at: u64,
    pub last_activity: u64,
    /// The absolute end of the session (unix seconds), whatever its activity.
    pub expires_at: u64,
    pub user_agent: String,
    pub ip: String,
    /// The `jti` of the only refresh token that may be presented next.
    pub refresh_jti: String,
}

/// What happened to a refresh-token rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The presented token was current; the session now expects the new one.
    Rotated,
    /// The presented token was already rotated: reuse (RFC 9700).
    Reused,
    /// No such session (expired, logged out or revoked).
    Missing,
}

/// The store could not be reached or answered nonsense.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store returned corrupt data: {0}")]
    Corrupt(String),
}

/// How long a session key may live: until it idles out or reaches its absolute end.
pub fn session_ttl(s: &SessionRecord, idle_seconds: u64, now: u64) -> u64 {
    let idle_end = s.last_activity.saturating_add(idle_seconds);
    idle_end.min(s.expires_at).saturating_sub(now).max(1)
}

/// Which store backs sessions, revocations and limits (`store:` in gateway.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// In-process; one instance; nothing survives a restart.
    Memory,
    /// Shared by every instance that points at the same Redis and prefix.
    Redis { redis: RedisSettings, key_prefix: String },
}

/// Where a Redis deployment is and how to log in to it (`store.redis`, or `store.redis_url`).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub mode: RedisMode,
    /// ACL user name (from `username_env`; a URL may carry its own).
    pub username: Option<String>,
    /// From `password_env` (a URL may carry its own). Never printed.
    pub password: Option<String>,
    /// TLS to every node (and to the sentinels).
    pub tls: bool,
}

/// The three deployments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    /// One server: `redis://host:port/db` or `redis+unix:///path`.
    Standalone { url: String },
    /// Sentinels that name the master of `master_name`; the gateway follows a failover.
    Sentinel { sentinels: Vec<String>, master_name: String, db: i64 },
    /// Cluster seed nodes; the slot map is discovered and followed.
    Cluster { nodes: Vec<String> },
}

impl RedisSettings {
    /// A standalone server at `url`, with whatever credentials the URL carries.
    pub fn standalone(url: &str) -> Self {
        RedisSettings { mode: RedisMode::Standalone { url: url.to_string() }, username: None, password: None, tls: false }
    }

    /// Every address this names, for messages (passwords redacted).
    pub fn addresses(&self) -> Vec<String> {
        match &self.mode {
            RedisMode::Standalone { url } => vec![redact_url(url)],
            RedisMode::Sentinel { sentinels, .. } => sentinels.clone(),
            RedisMode::Cluster { nodes } => nodes.clone(),
        }
    }

    /// `standalone`, `sentinel` or `cluster`.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            RedisMode::Standalone { .. } => "standalone",
            RedisMode::Sentinel { .. } => "sentinel",
            RedisMode::Cluster { .. } => "cluster",
        }
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.mode {
            RedisMode::Standalone { url } => format!("Standalone {{ url: {:?} }}", redact_url(url)),
            other => format!("{other:?}"),
        };
        f.debug_struct("RedisSettings")
            .field("mode", &format_args!("{mode}"))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// `host:port` split, or None.
pub fn host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    (!host.is_empty() && !host.contains(['/', ' ', '@'])).then(|| (host.to_string(), port))
}

/// The store a config asks for.
pub fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match settings {
        StoreSettings::Memory => Arc::new(memory::MemoryStore::new()),
        StoreSettings::Redis { redis, key_prefix } => Arc::new(redis::RedisStore::new(redis, key_prefix)?),
    })
}

/// Whether the store a config names can be reached, for `portcullis check --connect`: a line per
/// address tried, then Ok or what is wrong.
pub async fn probe(settings: &StoreSettings) -> (Vec<String>, Result<(), String>) {
    match settings {
        StoreSettings::Memory => (vec!["store: memory (nothing to connect to)".into()], Ok(())),
        StoreSettings::Redis { redis: r, key_prefix } => match redis::RedisStore::new(r, key_prefix) {
            Ok(store) => {
                let (lines, result) = store.probe(r).await;
                let lines = lines.into_iter().map(|l| format!("store ({}): {l}", r.mode_name())).collect();
                (lines, result)
            }
            Err(e) => (Vec::new(), Err(e.to_string())),
        },
    }
}

/// What every role shares: where the store lives and whether it answers.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Called once, on the long-lived runtime that should drive the store's connections, before
    /// anything else (the session sync does it when it starts).
    fn prepare(&self) {}
    /// Whether the store lives in this process (then it is always reachable and never shared).
    fn is_local(&self) -> bool {
        false
    }
    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Users created through the admin API.
#[async_trait]
pub trait UserStore: Backend {
    /// A user by id.
    async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    /// A user by email (case-insensitive).
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError>;
    /// All users.
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Creates a user; false if the email is taken.
    async fn create_user(&self, user: &UserRecord) -> Result<bool, StoreError>;
    /// Changes a user's role; false if there is no such user.
    async fn set_user_role(&self, id: &str, role: &str) -> Result<bool, StoreError>;
    /// Deletes a user; false if there is no such user.
    async fn delete_user(&self, id: &str) -> Result<bool, StoreError>;
}

/// Sessions, refresh-token rotation and revocations.
#[async_trait]
pub trait SessionStore: Backend {
    /// Records a new session, alive for `idle_seconds` of inactivity (and never past `expires_at`).
    async fn create_session(&self, session: &SessionRecord, idle_seconds: u64, now: u64) -> Result<(), StoreError>;
    /// A live session.
    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// A user's live sessions.
    async fn sessions_of(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError>;
    /// Atomically replaces the session's expected refresh `jti` if `presented` is the current one.
    async fn rotate_refresh(
        &self,
        session_id: &str,
        presented: &str,
        next: &str,
        now: u64,
        idle_seconds: u64,
    ) -> Result<Rotation, StoreError>;
    /// Write-behind activity: each session's latest activity time, extending its idle deadline.
    async fn touch_sessions(&self, activity: &[(String, u64)], idle_seconds: u64) -> Result<(), StoreError>;
    /// Ends sessions and records them as revoked until `until` (when their last access token
    /// expires), telling every instance.
    async fn revoke_sessions(&self, session_ids: &[String], until: u64) -> Result<(), StoreError>;
    /// Every revocation still in force at `now`: (session id, in force until).
    async fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError>;
    /// A stream of revocation notices from every instance (session id, in force until). It ends
    /// when the connection behind it breaks; the caller reconnects and reconciles.
    async fn watch_revocations(&self) -> Result<RevocationNotices, StoreError>;
}

/// Rate-limit counters and login lockouts, shared by every instance.
#[async_trait]
pub trait LimitStore: Backend {
    /// One exact rate-limit check (GCRA), atomic across instances; `now_ms` in milliseconds.
    async fn rate_limit(&self, key: &str, limit: Limit, now_ms: u64) -> Result<Decision, StoreError>;
    /// Records a failed login for `account` and returns its new lockout state (atomic).
    async fn login_failed(&self, account: &str, policy: LockoutPolicy, now: u64) -> Result<LockoutState, StoreError>;
    /// The lockout state of `account`.
    async fn lockout_state(&self, account: &str) -> Result<LockoutState, StoreError>;
    /// A successful login clears the account's failures and lockout history.
    async fn login_succeeded(&self, account: &str) -> Result<(), StoreError>;
    /// Adds hits to shared sliding-window counters; returns, per flush, the window's total across
    /// instances and the previous window's total.
    async fn sync_windows(&self, flushes: &[Flush]) -> Result<Vec<(u64, u64)>, StoreError>;
    /// Marks `instance` alive until `now_ms + ttl_ms` and returns how many instances are alive.
    async fn heartbeat(&self, instance: &str, now_ms: u64, ttl_ms: u64) -> Result<u64, StoreError>;
}

/// Provider health, shared by every instance: each provider's state is an opaque JSON object
/// whose `version` field the store compares (optimistic concurrency); nothing else is read.
#[async_trait]
pub trait ProviderStore: Backend {
    /// Several providers' states (JSON), in order.
    async fn provider_states(&self, names: &[String]) -> Result<Vec<Option<String>>, StoreError>;
    /// One provider's state (JSON).
    async fn provider_state(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.provider_states(&[name.to_string()]).await?.pop().flatten())
    }
    /// Writes `next` (JSON) if the stored `version` is still `expected` (0: none stored) and
    /// tells every instance; false on a conflict.
    async fn provider_cas(&self, name: &str, expected: u64, next: &str) -> Result<bool, StoreError>;
    /// Takes `key` for `ttl_ms` if nobody holds it (one instance probes a provider per interval).
    async fn try_lock(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError>;
    /// Names of providers whose state changed on any instance.
    async fn watch_providers(&self) -> Result<BoxStream<'static, String>, StoreError>;
}

/// The registries of credentials the gateway issues or blocks: each record an opaque JSON
/// object under its id (the store reads nothing in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Registry {
    /// API keys (never the key itself: its keyed hash).
    ApiKeys,
    /// The admin denylist.
    Denylist,
}

impl Registry {
    /// The name used in store keys and notices.
    pub fn as_str(self) -> &'static str {
        match self {
            Registry::ApiKeys => "api-keys",
            Registry::Denylist => "denylist",
        }
    }

    /// The registry a notice names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api-keys" => Some(Registry::ApiKeys),
            "denylist" => Some(Registry::Denylist),
            _ => None,
        }
    }
}

/// API keys and denylist entries, shared by every instance, and the last-use times of keys.
/// Every write tells every instance (which re-read the registry it names).
#[async_trait]
pub trait CredentialStore: Backend {
    /// Writes a record (JSON) under `id`, replacing any, and tells every instance.
    async fn put_record(&self, registry: Registry, id: &str, json: &str) -> Result<(), StoreError>;
    /// Removes a record and tells every instance; false if there was none.
    async fn remove_record(&self, registry: Registry, id: &str) -> Result<bool, StoreError>;
    /// Every record of a registry (JSON).
    async fn records(&self, registry: Registry) -> Result<Vec<String>, StoreError>;
    /// Write-behind: the latest use of each key (unix seconds); a later time wins.
    async fn touch_keys(&self, uses: &[(String, u64)]) -> Result<(), StoreError>;
    /// The latest recorded use of every key.
    async fn key_uses(&self) -> Result<HashMap<String, u64>, StoreError>;
    /// Registries changed on any instance, as they are announced. It ends when the connection
    /// behind it breaks; the caller reconnects and re-reads.
    async fn watch_records(&self) -> Result<BoxStream<'static, Registry>, StoreError>;
    /// An identity provider's keys as one instance last fetched them (opaque JSON).
    async fn shared_keys(&self, provider: &str) -> Result<Option<String>, StoreError>;
    /// Shares a provider's freshly fetched keys (JSON, kept `ttl_ms`), tells every instance, and
    /// gives up the claim to fetch them.
    async fn put_shared_keys(&self, provider: &str, json: &str, ttl_ms: u64) -> Result<(), StoreError>;
    /// Takes the right to fetch a provider's keys for `ttl_ms` if nobody holds it.
    async fn claim_fetch(&self, provider: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError>;
    /// Names of providers whose shared keys changed, as announced.
    async fn watch_shared_keys(&self) -> Result<BoxStream<'static, String>, StoreError>;
}

/// How long a token window's counters outlive the window (late settlements still land).
pub const TOKEN_WINDOW_GRACE_SECONDS: u64 = 120;

/// One window's token use: its total (reservations in flight included) and settled use by model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowUse {
    pub total: u64,
    pub by_model: std::collections::BTreeMap<String, u64>,
}

/// Reservations settled to real use, summed per user, windows and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub user: String,
    pub windows: [Window; 2],
    pub model: String,
    pub delta: i64,
    pub used: u64,
}

/// Token budgets: one user's counters in fixed windows, reserved atomically before an LLM call
/// and settled to its real usage after it.
#[async_trait]
pub trait UsageStore: Backend {
    /// Reserves `amount` tokens in every window, if each stays within its limit: all or none.
    /// None when reserved; else the first window that would go over, and its use.
    async fn reserve_tokens(&self, user: &str, windows: &[Window], amount: u64) -> Result<Option<(usize, u64)>, StoreError>;
    /// Settles reservations to real use, in one round trip: each adds its `delta` (used minus
    /// reserved) to its windows' totals (windows already dropped are skipped) and `used` to its
    /// model's count.
    async fn settle_tokens(&self, settlements: &[Settlement]) -> Result<(), StoreError>;
    /// Each window's use.
    async fn token_use(&self, user: &str, windows: &[Window]) -> Result<Vec<WindowUse>, StoreError>;
}

/// The audit trail as a stream (a Redis stream): appended in batches, trimmed to about
/// `max_len` entries.
#[async_trait]
pub trait AuditStream: Backend {
    /// Appends one entry per line (field `event`) to `stream`, which is not under the prefix.
    async fn append_audit(&self, stream: &str, max_len: u64, lines: &[Vec<u8>]) -> Result<(), StoreError>;
}

/// The audit stream at `url`: a connection of its own, since `audit.redis_url` may name
/// another Redis than the store's. Its [`Backend::prepare`] is the audit writer's to call.
pub fn audit_stream(settings: &RedisSettings) -> Result<Arc<dyn AuditStream>, StoreError> {
    Ok(Arc::new(redis::RedisStore::new(settings, "")?))
}

/// Every role at once: what a backend implements.
pub trait Store: UserStore + SessionStore + LimitStore + ProviderStore + CredentialStore + UsageStore {}

impl<T: UserStore + SessionStore + LimitStore + ProviderStore + CredentialStore + UsageStore> Store for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port() {
        assert_eq!(host_port("127.0.0.1:7000"), Some(("127.0.0.1".into(), 7000)));
        assert_eq!(host_port("[::1]:26379"), Some(("::1".into(), 26379)));
        assert_eq!(host_port("redis-0.redis:6379"), Some(("redis-0.redis".into(), 6379)));
        for bad in ["127.0.0.1", ":6379", "h:0", "h:70000", "h:port", "redis://h:1", "u@h:1"] {
            assert_eq!(host_port(bad), None, "{bad}");
        }
    }
}
