//! Lowering of `store:`: the memory or Redis backend, and which Redis deployment.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{did_you_mean, problem, Problem};
use crate::store::{host_port, RedisMode, RedisSettings, StoreSettings};

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

pub(super) fn lower_store(s: &RawStore, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<StoreSettings> {
    if s.key_prefix.contains(['{', '}']) {
        // A brace would become every key's Cluster hash tag and put all of them in one slot.
        problem(p, "store.key_prefix", "must not contain `{` or `}` (they mark Redis Cluster hash tags)");
    }
    match s.backend.as_str() {
        "memory" => {
            if s.redis.is_some() || s.redis_url.is_some() {
                problem(p, "store.backend", "`redis`/`redis_url` are set but the backend is `memory`: set `backend: redis` or remove them");
            }
            Some(StoreSettings::Memory)
        }
        "redis" => {
            let redis = match (&s.redis, &s.redis_url) {
                (Some(_), Some(_)) => {
                    problem(p, "store.redis_url", "give either `redis_url` or `redis:`, not both");
                    return None;
                }
                (Some(r), None) => lower_redis(r, env, p)?,
                (None, _) => RedisSettings::standalone(&standalone_url(None, s.redis_url.as_deref(), "store.redis_url", env, p)?),
            };
            Some(StoreSettings::Redis { redis, key_prefix: s.key_prefix.clone() })
        }
        other => {
            problem(
                p,
                "store.backend",
                format!("unknown store backend `{other}`: use `memory` or `redis`{}", did_you_mean(other, ["memory", "redis"])),
            );
            None
        }
    }
}

/// The standalone server's URL: the environment variable `REDIS_URL` wins over the file.
fn standalone_url(
    tls: Option<bool>,
    url: Option<&str>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Vec<Problem>,
) -> Option<String> {
    let (mut url, place) = match env("REDIS_URL") {
        Some(url) => (url, "environment variable `REDIS_URL`".to_string()),
        None => match url {
            Some(url) => (url.to_string(), format!("`{path}`")),
            None => {
                problem(p, path, "the redis backend needs a URL here (or the environment variable `REDIS_URL`)");
                return None;
            }
        },
    };
    if tls == Some(true) {
        if let Some(rest) = url.strip_prefix("redis://") {
            url = format!("rediss://{rest}");
        }
    }
    // The URL may carry a password: never repeat it.
    if redis::Client::open(url.as_str()).is_err() {
        problem(p, path, format!("{place} is not a valid Redis URL (redis://host:port/db, rediss://... or redis+unix:///path)"));
        return None;
    }
    Some(url)
}

fn lower_redis(r: &RawRedis, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<RedisSettings> {
    let before = p.len();
    let secret = |name: &Option<String>, key: &str, p: &mut Vec<Problem>| -> Option<String> {
        let var = name.as_ref()?;
        let value = env(var);
        if value.is_none() {
            problem(p, &format!("store.redis.{key}"), format!("the environment variable `{var}` is not set"));
        }
        value
    };
    let username = secret(&r.username_env, "username_env", p);
    let password = secret(&r.password_env, "password_env", p);
    let addresses = |list: &[String], key: &str, p: &mut Vec<Problem>| {
        if list.is_empty() {
            problem(p, &format!("store.redis.{key}"), format!("`mode: {}` needs at least one `host:port` in `{key}`", r.mode));
        }
        for (i, a) in list.iter().enumerate() {
            if host_port(a).is_none() {
                problem(p, &format!("store.redis.{key}[{i}]"), format!("`{a}` is not `host:port`"));
            }
        }
    };
    let mode = match r.mode.as_str() {
        "standalone" => RedisMode::Standalone { url: standalone_url(Some(r.tls), r.url.as_deref(), "store.redis.url", env, p)? },
        "sentinel" => {
            addresses(&r.sentinels, "sentinels", p);
            let Some(master_name) = r.master_name.clone().filter(|m| !m.is_empty()) else {
                problem(p, "store.redis.master_name", "`mode: sentinel` needs the name the sentinels monitor the master under");
                return None;
            };
            RedisMode::Sentinel { sentinels: r.sentinels.clone(), master_name, db: r.db }
        }
        "cluster" => {
            addresses(&r.nodes, "nodes", p);
            if r.db != 0 {
                problem(p, "store.redis.db", "a Redis Cluster has only database 0");
            }
            RedisMode::Cluster { nodes: r.nodes.clone() }
        }
        other => {
            problem(
                p,
                "store.redis.mode",
                format!(
                    "unknown mode `{other}`: use standalone, sentinel or cluster{}",
                    did_you_mean(other, ["standalone", "sentinel", "cluster"])
                ),
            );
            return None;
        }
    };
    let wrong_mode = |key: &str, set: bool, p: &mut Vec<Problem>| {
        if set {
            problem(p, &format!("store.redis.{key}"), format!("not used with `mode: {}`", r.mode));
        }
    };
    wrong_mode("url", r.url.is_some() && !matches!(mode, RedisMode::Standalone { .. }), p);
    wrong_mode("sentinels", !r.sentinels.is_empty() && !matches!(mode, RedisMode::Sentinel { .. }), p);
    wrong_mode("master_name", r.master_name.is_some() && !matches!(mode, RedisMode::Sentinel { .. }), p);
    wrong_mode("nodes", !r.nodes.is_empty() && !matches!(mode, RedisMode::Cluster { .. }), p);
    (p.len() == before).then_some(RedisSettings { mode, username, password, tls: r.tls })
}
