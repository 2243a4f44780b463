//! The Redis store: users, sessions and revocations shared by any number of gateway instances.
//!
//! Keys (all under the configured prefix, `portcullis:` by default). Keys one script or
//! transaction touches together share a Cluster hash tag (the part in braces), so every script
//! runs on Redis Cluster; other multi-key work is pipelined, which the cluster connection routes
//! key by key.
//!
//! | key | type | TTL |
//! |---|---|---|
//! | `{users}:user:<id>` | hash: id, email, role, password_hash, created_at | none (deleted explicitly) |
//! | `{users}:email:<email>` | string: user id (email lower-cased) | none (deleted with the user) |
//! | `{users}:all` | set of user ids | none |
//! | `session:<sid>` | hash: id, user_id, created_at, last_activity, expires_at, user_agent, ip, refresh_jti | until idle timeout or absolute end, whichever is first; extended by activity |
//! | `user-sessions:<user_id>` | set of session ids (pruned when read) | until the user's newest session's absolute end |
//! | `revoked` | sorted set: session id scored by "in force until" | until the last revocation lapses; lapsed members removed on every write and read |
//! | `rl:<limit>:<subject>` | string: GCRA theoretical arrival time (ms) | until it no longer limits (<= the window) |
//! | `lockout:<email>` | hash: failures, lockouts, locked_until | until the lockout ends plus `max_seconds` |
//! | `rw:<limit>:<subject>:<window>` | integer: hits in one sliding window | two windows |
//! | `instances` | sorted set: live gateway instances scored by heartbeat expiry (ms) | a few sync intervals |
//! | `provider:<name>` | string: the provider's health state as JSON (status, last_check, response_time_ms, consecutive_failures, reason, unhealthy_until, retry_after_until, version) | a day after its last change |
//! | `lock:probe:<name>` | string: the instance probing that provider this interval | the probe interval |
//! | `{credentials}:api-keys` | hash: key id -> the key's record as JSON (its HMAC, never the key) | none (deleted on revoke) |
//! | `{credentials}:denylist` | hash: entry id -> the denylist entry as JSON | none (expired entries are removed by whichever instance sees them first) |
//! | `{credentials}:key-uses` | hash: key id -> last use (unix seconds) | none (deleted with the key) |
//! | `tokens:{<user>}:m:<minute>`, `tokens:{<user>}:d:<day>` | hash: `total` (tokens used and reserved in that fixed window), `model:<model>` (tokens settled per model) | the window's end plus two minutes |
//! | `idp-keys:{<provider>}` | string: an identity provider's JWKS as last fetched by any instance, as JSON (body, when the next refresh is due) | until the next refresh is due |
//! | `lock:idp:{<provider>}` | string: the instance fetching that provider's keys | the fetch deadline |
//! | channel `idp-keys` | pub/sub: the name of a provider whose shared keys changed | - |
//! | channel `credentials` | pub/sub: the registry that changed (`api-keys` or `denylist`) | - |
//! | channel `provider-health` | pub/sub: the name of a provider whose state changed | - |
//! | channel `revocations` | pub/sub: `"{until} {sid} {sid}..."` | - |
//!
//! Connections: see [`conn`] (one handle for standalone, Sentinel and Cluster), created by
//! [`Store::prepare`] on the session-sync background service's runtime (which lives as long as
//! the process) and shared by every thread. The sync task's health checks and the endpoints
//! therefore see the same connection state: when `/readyz` says ready, logins work.

mod cluster;
mod conn;
mod credentials;
mod info;
mod limits;
mod lua;
mod providers;
mod sessions;
mod usage;
mod users;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::Arc;

use crate::limits::{Decision, Flush, Limit, LockoutPolicy, LockoutState};

use self::conn::{Conn, Connector};
use self::lua::Lua;
use super::{
    session_ttl, AuditStream, Backend, CredentialStore, LimitStore, ProviderStore, RedisSettings, Registry, RevocationNotices, Rotation,
    SessionRecord, SessionStore, Settlement, StoreError, UsageStore, UserRecord, UserStore, WindowUse,
};
use crate::llm::budget::Window;

// The atomic operations, one Lua script each (src/store/lua/, run by SHA and sent whole to a
// node that lacks them: see [`lua`]). Each file says what its KEYS and ARGV are.
const CREATE_USER: &str = include_str!("lua/create_user.lua");
const ROTATE: &str = include_str!("lua/rotate_refresh.lua");
const TOUCH: &str = include_str!("lua/touch_sessions.lua");
const REVOKE: &str = include_str!("lua/revoke_sessions.lua");
const GCRA: &str = include_str!("lua/gcra.lua");
const LOGIN_FAILED: &str = include_str!("lua/login_failed.lua");
const PROVIDER_CAS: &str = include_str!("lua/provider_cas.lua");
const TOUCH_KEYS: &str = include_str!("lua/touch_keys.lua");
const RESERVE_TOKENS: &str = include_str!("lua/reserve_tokens.lua");
const SETTLE_TOKENS: &str = include_str!("lua/settle_tokens.lua");

/// How long a provider's state is kept after its last change.
const PROVIDER_STATE_TTL_MS: u64 = 24 * 3600 * 1000;

/// A Redis-backed store.
pub struct RedisStore {
    connector: Arc<Connector>,
    prefix: String,
    create_user: Lua,
    rotate: Lua,
    revoke: Lua,
    gcra: Lua,
    login_failed: Lua,
    provider_cas: Lua,
    touch_keys: Lua,
    reserve_tokens: Lua,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn now() -> u64 {
    crate::clock::unix_now()
}

impl RedisStore {
    /// A store on the deployment `settings` names; connects when [`Backend::prepare`] is called.
    pub fn new(settings: &RedisSettings, prefix: &str) -> Result<Self, StoreError> {
        Ok(RedisStore {
            connector: Arc::new(Connector::new(settings)?),
            prefix: prefix.to_string(),
            create_user: Lua::new(CREATE_USER),
            rotate: Lua::new(ROTATE),
            revoke: Lua::new(REVOKE),
            gcra: Lua::new(GCRA),
            login_failed: Lua::new(LOGIN_FAILED),
            provider_cas: Lua::new(PROVIDER_CAS),
            touch_keys: Lua::new(TOUCH_KEYS),
            reserve_tokens: Lua::new(RESERVE_TOKENS),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    fn con(&self) -> Result<Conn, StoreError> {
        self.connector.conn()
    }

    /// Whether each address of the deployment answers (`portcullis check --connect`).
    pub async fn probe(&self, settings: &RedisSettings) -> (Vec<String>, Result<(), String>) {
        self.connector.probe(settings).await
    }

    /// A dedicated pub/sub connection subscribed to `channel` (under the prefix).
    async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub, StoreError> {
        let mut pubsub = self.connector.pubsub().await?;
        tokio::time::timeout(std::time::Duration::from_secs(1), pubsub.subscribe(self.key(channel)))
            .await
            .map_err(|_| StoreError::Unavailable("timed out subscribing".into()))?
            .map_err(unavailable)?;
        Ok(pubsub)
    }

    fn user_key(&self, id: &str) -> String {
        self.key(&format!("{{users}}:user:{id}"))
    }

    fn email_key(&self, email: &str) -> String {
        self.key(&format!("{{users}}:email:{}", email.to_lowercase()))
    }

    fn registry_key(&self, name: &str) -> String {
        self.key(&format!("{{credentials}}:{name}"))
    }

    async fn hash(&self, key: &str) -> Result<HashMap<String, String>, StoreError> {
        self.con()?.hgetall(key).await.map_err(unavailable)
    }

    async fn hashes(&self, keys: &[String]) -> Result<Vec<HashMap<String, String>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.hgetall(k);
        }
        pipe.query_async(&mut self.con()?).await.map_err(unavailable)
    }
}

fn field<'a>(h: &'a HashMap<String, String>, name: &str) -> Result<&'a str, StoreError> {
    h.get(name).map(String::as_str).ok_or_else(|| StoreError::Corrupt(format!("missing field {name}")))
}

fn number(h: &HashMap<String, String>, name: &str) -> Result<u64, StoreError> {
    field(h, name)?.parse().map_err(|_| StoreError::Corrupt(format!("field {name} is not a number")))
}

#[async_trait]
impl AuditStream for RedisStore {
    async fn append_audit(&self, stream: &str, max_len: u64, lines: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for line in lines {
            pipe.cmd("XADD").arg(stream).arg("MAXLEN").arg("~").arg(max_len).arg("*").arg("event").arg(line.as_slice()).ignore();
        }
        pipe.query_async::<()>(&mut self.con()?).await.map_err(unavailable)
    }
}

#[async_trait]
impl Backend for RedisStore {
    fn prepare(&self) {
        self.connector.start();
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING").query_async(&mut self.con()?).await.map_err(unavailable)?;
        Ok(())
    }
}
