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
mod lua;

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

fn user_from(h: &HashMap<String, String>) -> Result<Option<UserRecord>, StoreError> {
    if h.is_empty() {
        return Ok(None);
    }
    Ok(Some(UserRecord {
        id: field(h, "id")?.into(),
        email: field(h, "email")?.into(),
        role: field(h, "role")?.into(),
        password_hash: field(h, "password_hash")?.into(),
        created_at: number(h, "created_at")?,
    }))
}

fn session_from(h: &HashMap<String, String>) -> Result<Option<SessionRecord>, StoreError> {
    if h.is_empty() {
        return Ok(None);
    }
    let s = SessionRecord {
        id: field(h, "id")?.into(),
        user_id: field(h, "user_id")?.into(),
        created_at: number(h, "created_at")?,
        last_activity: number(h, "last_activity")?,
        expires_at: number(h, "expires_at")?,
        user_agent: field(h, "user_agent")?.into(),
        ip: field(h, "ip")?.into(),
        refresh_jti: field(h, "refresh_jti")?.into(),
    };
    Ok((s.expires_at > now()).then_some(s))
}

/// Parses a revocation notice: `"{until} {sid} {sid}..."`.
fn parse_notice(payload: &str) -> Vec<(String, u64)> {
    let mut parts = payload.split(' ');
    let Some(until) = parts.next().and_then(|u| u.parse::<u64>().ok()) else {
        return Vec::new();
    };
    parts.filter(|s| !s.is_empty()).map(|s| (s.to_string(), until)).collect()
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

#[async_trait]
impl UserStore for RedisStore {
    async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        user_from(&self.hash(&self.user_key(id)).await?)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let id: Option<String> = self.con()?.get(self.email_key(email)).await.map_err(unavailable)?;
        match id {
            Some(id) => self.user(&id).await,
            None => Ok(None),
        }
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let ids: Vec<String> = self.con()?.smembers(self.key("{users}:all")).await.map_err(unavailable)?;
        let keys: Vec<String> = ids.iter().map(|id| self.user_key(id)).collect();
        let mut users = Vec::new();
        for h in self.hashes(&keys).await? {
            users.extend(user_from(&h)?);
        }
        users.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(users)
    }

    async fn create_user(&self, u: &UserRecord) -> Result<bool, StoreError> {
        let created: i64 = self
            .create_user
            .key(self.email_key(&u.email))
            .key(self.user_key(&u.id))
            .key(self.key("{users}:all"))
            .arg(&u.id)
            .arg(&u.email)
            .arg(&u.role)
            .arg(&u.password_hash)
            .arg(u.created_at)
            .invoke_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(created == 1)
    }

    async fn set_user_role(&self, id: &str, role: &str) -> Result<bool, StoreError> {
        let key = self.user_key(id);
        let mut con = self.con()?;
        let exists: bool = con.exists(&key).await.map_err(unavailable)?;
        if exists {
            let _: () = con.hset(&key, "role", role).await.map_err(unavailable)?;
        }
        Ok(exists)
    }

    async fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        let Some(user) = self.user(id).await? else {
            return Ok(false);
        };
        // The user's three keys share the `{users}` hash tag (one transaction on any deployment);
        // the session index lives in its own slot.
        let _: () = redis::pipe()
            .atomic()
            .del(self.user_key(id))
            .del(self.email_key(&user.email))
            .srem(self.key("{users}:all"), id)
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        let _: () = self.con()?.del(self.key(&format!("user-sessions:{id}"))).await.map_err(unavailable)?;
        Ok(true)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create_session(&self, s: &SessionRecord, idle_seconds: u64, now: u64) -> Result<(), StoreError> {
        let key = self.key(&format!("session:{}", s.id));
        let index = self.key(&format!("user-sessions:{}", s.user_id));
        let fields: [(&str, String); 8] = [
            ("id", s.id.clone()),
            ("user_id", s.user_id.clone()),
            ("created_at", s.created_at.to_string()),
            ("last_activity", s.last_activity.to_string()),
            ("expires_at", s.expires_at.to_string()),
            ("user_agent", s.user_agent.clone()),
            ("ip", s.ip.clone()),
            ("refresh_jti", s.refresh_jti.clone()),
        ];
        // The index first: a session "log out everywhere" cannot find must never exist (a dangling
        // index entry is pruned when read). Two slots, so two steps rather than one transaction.
        let _: () = redis::pipe()
            .sadd(&index, &s.id)
            .ignore()
            .expire(&index, s.expires_at.saturating_sub(now).max(1) as i64)
            .ignore()
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        let _: () = redis::pipe()
            .atomic()
            .hset_multiple(&key, &fields)
            .ignore()
            .expire(&key, session_ttl(s, idle_seconds, now) as i64)
            .ignore()
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        session_from(&self.hash(&self.key(&format!("session:{id}"))).await?)
    }

    async fn sessions_of(&self, user_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let index = self.key(&format!("user-sessions:{user_id}"));
        let ids: Vec<String> = self.con()?.smembers(&index).await.map_err(unavailable)?;
        let keys: Vec<String> = ids.iter().map(|id| self.key(&format!("session:{id}"))).collect();
        let mut live = Vec::new();
        let mut dead = Vec::new();
        for (id, h) in ids.iter().zip(self.hashes(&keys).await?) {
            match session_from(&h)? {
                Some(s) => live.push(s),
                None => dead.push(id.clone()),
            }
        }
        if !dead.is_empty() {
            let _: () = self.con()?.srem(&index, dead).await.map_err(unavailable)?;
        }
        live.sort_by_key(|s| s.created_at);
        Ok(live)
    }

    async fn rotate_refresh(
        &self,
        session_id: &str,
        presented: &str,
        next: &str,
        now: u64,
        idle_seconds: u64,
    ) -> Result<Rotation, StoreError> {
        let outcome: i64 = self
            .rotate
            .key(self.key(&format!("session:{session_id}")))
            .arg(presented)
            .arg(next)
            .arg(now)
            .arg(idle_seconds)
            .invoke_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(match outcome {
            1 => Rotation::Rotated,
            0 => Rotation::Reused,
            _ => Rotation::Missing,
        })
    }

    async fn touch_sessions(&self, activity: &[(String, u64)], idle_seconds: u64) -> Result<(), StoreError> {
        // One script call per session (each in its own slot), pipelined in chunks; EVAL so that a
        // script cache emptied by a restart cannot fail part of a pipeline.
        let mut con = self.con()?;
        let now = now();
        for chunk in activity.chunks(500) {
            let mut pipe = redis::pipe();
            for (id, at) in chunk {
                pipe.cmd("EVAL").arg(TOUCH).arg(1).arg(self.key(&format!("session:{id}"))).arg(now).arg(idle_seconds).arg(*at).ignore();
            }
            let _: () = pipe.query_async(&mut con).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn revoke_sessions(&self, session_ids: &[String], until: u64) -> Result<(), StoreError> {
        // The revocation first (it is what every instance enforces), then the sessions go, so
        // their refresh tokens stop rotating.
        let mut con = self.con()?;
        for chunk in session_ids.chunks(500) {
            let mut call = self.revoke.call();
            call.key(self.key("revoked")).arg(until).arg(now()).arg(self.key("revocations"));
            for id in chunk {
                call.arg(id);
            }
            let _: i64 = call.invoke_async(&mut con).await.map_err(unavailable)?;
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.del(self.key(&format!("session:{id}"))).ignore();
            }
            let _: () = pipe.query_async(&mut con).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let key = self.key("revoked");
        let (all,): (Vec<(String, f64)>,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now)
            .ignore()
            .cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(all.into_iter().map(|(id, until)| (id, until as u64)).collect())
    }

    async fn watch_revocations(&self) -> Result<RevocationNotices, StoreError> {
        let pubsub = self.subscribe("revocations").await?;
        Ok(pubsub.into_on_message().map(|msg| parse_notice(&String::from_utf8_lossy(msg.get_payload_bytes()))).boxed())
    }
}

#[async_trait]
impl LimitStore for RedisStore {
    async fn rate_limit(&self, key: &str, limit: Limit, now_ms: u64) -> Result<Decision, StoreError> {
        let interval = (limit.window_ms / limit.requests.max(1)).max(1);
        let (allowed, remaining, reset, retry): (i64, i64, i64, i64) = self
            .gcra
            .key(self.key(&format!("rl:{key}")))
            .arg(now_ms)
            .arg(interval)
            .arg(limit.window_ms)
            .arg(limit.requests)
            .invoke_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(Decision {
            allowed: allowed == 1,
            remaining: remaining.max(0) as u64,
            reset_seconds: reset.max(0) as u64,
            retry_after_seconds: retry.max(0) as u64,
        })
    }

    async fn login_failed(&self, account: &str, policy: LockoutPolicy, now: u64) -> Result<LockoutState, StoreError> {
        let (failures, lockouts, locked_until): (i64, i64, i64) = self
            .login_failed
            .key(self.key(&format!("lockout:{}", account.to_lowercase())))
            .arg(policy.after_failures)
            .arg(policy.base_seconds)
            .arg(policy.max_seconds)
            .arg(now)
            .invoke_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(LockoutState { failures: failures as u32, lockouts: lockouts as u32, locked_until: locked_until.max(0) as u64 })
    }

    async fn lockout_state(&self, account: &str) -> Result<LockoutState, StoreError> {
        let h = self.hash(&self.key(&format!("lockout:{}", account.to_lowercase()))).await?;
        let get = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(LockoutState { failures: get("failures") as u32, lockouts: get("lockouts") as u32, locked_until: get("locked_until") })
    }

    async fn login_succeeded(&self, account: &str) -> Result<(), StoreError> {
        let _: () = self.con()?.del(self.key(&format!("lockout:{}", account.to_lowercase()))).await.map_err(unavailable)?;
        Ok(())
    }

    async fn heartbeat(&self, instance: &str, now_ms: u64, ttl_ms: u64) -> Result<u64, StoreError> {
        let key = self.key("instances");
        let (n,): (u64,) = redis::pipe()
            .cmd("ZADD")
            .arg(&key)
            .arg(now_ms + ttl_ms)
            .arg(instance)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now_ms)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms)
            .ignore()
            .cmd("ZCARD")
            .arg(&key)
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(n.max(1))
    }

    async fn sync_windows(&self, flushes: &[Flush]) -> Result<Vec<(u64, u64)>, StoreError> {
        if flushes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for f in flushes {
            let current = self.key(&format!("rw:{}:{}", f.key, f.window));
            let previous = self.key(&format!("rw:{}:{}", f.key, f.window.wrapping_sub(1)));
            pipe.cmd("INCRBY").arg(&current).arg(f.hits);
            pipe.cmd("PEXPIRE").arg(&current).arg(2 * f.window_ms).ignore();
            pipe.cmd("GET").arg(&previous);
        }
        let answers: Vec<(u64, Option<u64>)> = pipe.query_async(&mut self.con()?).await.map_err(unavailable)?;
        Ok(answers.into_iter().map(|(total, prev)| (total, prev.unwrap_or(0))).collect())
    }
}

#[async_trait]
impl ProviderStore for RedisStore {
    async fn provider_states(&self, names: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // GETs, not MGET: each provider's key is in its own Cluster slot.
        let mut pipe = redis::pipe();
        for n in names {
            pipe.get(self.key(&format!("provider:{n}")));
        }
        pipe.query_async(&mut self.con()?).await.map_err(unavailable)
    }

    async fn provider_cas(&self, name: &str, expected: u64, json: &str) -> Result<bool, StoreError> {
        let ok: i64 = self
            .provider_cas
            .key(self.key(&format!("provider:{name}")))
            .arg(expected)
            .arg(json)
            .arg(PROVIDER_STATE_TTL_MS)
            .arg(self.key("provider-health"))
            .arg(name)
            .invoke_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(ok == 1)
    }

    async fn try_lock(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("lock:{key}")))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn watch_providers(&self) -> Result<futures_util::stream::BoxStream<'static, String>, StoreError> {
        let pubsub = self.subscribe("provider-health").await?;
        Ok(pubsub.into_on_message().map(|msg| String::from_utf8_lossy(msg.get_payload_bytes()).into_owned()).boxed())
    }
}

#[async_trait]
impl CredentialStore for RedisStore {
    async fn put_record(&self, registry: Registry, id: &str, json: &str) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(self.registry_key(registry.as_str()), id, json)
            .ignore()
            .publish(self.key("credentials"), registry.as_str())
            .ignore();
        pipe.query_async::<()>(&mut self.con()?).await.map_err(unavailable)
    }

    async fn remove_record(&self, registry: Registry, id: &str) -> Result<bool, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic().hdel(self.registry_key(registry.as_str()), id);
        if registry == Registry::ApiKeys {
            pipe.hdel(self.registry_key("key-uses"), id).ignore();
        }
        pipe.publish(self.key("credentials"), registry.as_str()).ignore();
        let (removed,): (i64,) = pipe.query_async(&mut self.con()?).await.map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn records(&self, registry: Registry) -> Result<Vec<String>, StoreError> {
        self.con()?.hvals(self.registry_key(registry.as_str())).await.map_err(unavailable)
    }

    async fn touch_keys(&self, uses: &[(String, u64)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut call = self.touch_keys.key(self.registry_key("key-uses"));
        call.key(self.registry_key("api-keys"));
        for (id, at) in uses {
            call.arg(id).arg(*at);
        }
        call.invoke_async::<()>(&mut self.con()?).await.map_err(unavailable)
    }

    async fn key_uses(&self) -> Result<HashMap<String, u64>, StoreError> {
        self.con()?.hgetall(self.registry_key("key-uses")).await.map_err(unavailable)
    }

    async fn shared_keys(&self, provider: &str) -> Result<Option<String>, StoreError> {
        self.con()?.get(self.key(&format!("idp-keys:{{{provider}}}"))).await.map_err(unavailable)
    }

    async fn put_shared_keys(&self, provider: &str, json: &str, ttl_ms: u64) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.key(&format!("idp-keys:{{{provider}}}")))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms.max(1))
            .ignore()
            .publish(self.key("idp-keys"), provider)
            .ignore()
            .del(self.key(&format!("lock:idp:{{{provider}}}")))
            .ignore();
        pipe.query_async::<()>(&mut self.con()?).await.map_err(unavailable)
    }

    async fn claim_fetch(&self, provider: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("lock:idp:{{{provider}}}")))
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms.max(1))
            .query_async(&mut self.con()?)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn watch_shared_keys(&self) -> Result<futures_util::stream::BoxStream<'static, String>, StoreError> {
        let pubsub = self.subscribe("idp-keys").await?;
        Ok(pubsub.into_on_message().map(|msg| String::from_utf8_lossy(msg.get_payload_bytes()).into_owned()).boxed())
    }

    async fn watch_records(&self) -> Result<futures_util::stream::BoxStream<'static, Registry>, StoreError> {
        let pubsub = self.subscribe("credentials").await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|msg| async move { Registry::parse(&String::from_utf8_lossy(msg.get_payload_bytes())) })
            .boxed())
    }
}

impl RedisStore {
    /// One user's window hashes: `{user}` is their hash tag, so a script touching all of them
    /// runs on one Cluster node.
    fn token_keys(&self, user: &str, windows: &[Window]) -> Vec<String> {
        windows.iter().map(|w| self.key(&format!("tokens:{{{user}}}:{}", w.key()))).collect()
    }
}

#[async_trait]
impl UsageStore for RedisStore {
    async fn reserve_tokens(&self, user: &str, windows: &[Window], amount: u64) -> Result<Option<(usize, u64)>, StoreError> {
        if windows.is_empty() {
            return Ok(None);
        }
        let mut inv = self.reserve_tokens.call();
        for k in self.token_keys(user, windows) {
            inv.key(k);
        }
        inv.arg(amount);
        for w in windows {
            inv.arg(w.limit);
        }
        for w in windows {
            inv.arg((w.ends_at() + super::TOKEN_WINDOW_GRACE_SECONDS) * 1000);
        }
        let (over, used): (i64, i64) = inv.invoke_async(&mut self.con()?).await.map_err(unavailable)?;
        Ok((over > 0).then(|| ((over - 1) as usize, used.max(0) as u64)))
    }

    async fn settle_tokens(&self, settlements: &[Settlement]) -> Result<(), StoreError> {
        if settlements.is_empty() {
            return Ok(());
        }
        // One pipeline; EVAL (not EVALSHA) so that a script cache emptied by a restart cannot
        // fail part of it. Each call touches one user's keys (one hash tag).
        let mut pipe = redis::pipe();
        for s in settlements {
            let keys = self.token_keys(&s.user, &s.windows);
            pipe.cmd("EVAL")
                .arg(SETTLE_TOKENS)
                .arg(keys.len())
                .arg(keys)
                .arg(s.delta)
                .arg(format!("model:{}", s.model))
                .arg(s.used)
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.con()?).await.map_err(unavailable)?;
        Ok(())
    }

    async fn token_use(&self, user: &str, windows: &[Window]) -> Result<Vec<WindowUse>, StoreError> {
        let hashes = self.hashes(&self.token_keys(user, windows)).await?;
        Ok(hashes
            .into_iter()
            .map(|h| {
                let mut u = WindowUse::default();
                for (field, value) in h {
                    let n = value.parse::<i64>().unwrap_or(0).max(0) as u64;
                    match field.strip_prefix("model:") {
                        Some(model) => {
                            u.by_model.insert(model.to_string(), n);
                        }
                        None if field == "total" => u.total = n,
                        None => {}
                    }
                }
                u
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_carry_a_deadline_and_session_ids() {
        assert_eq!(parse_notice("100 a b"), vec![("a".to_string(), 100), ("b".to_string(), 100)]);
        assert!(parse_notice("garbage a").is_empty());
        assert!(parse_notice("").is_empty());
    }
}
