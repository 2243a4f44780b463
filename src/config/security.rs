//! Lowering of the abuse-resistance sections: rate limits, lockout, audit, CORS, trusted
//! proxies, TLS. Problems are collected like everywhere else in the config.

use std::path::Path;

use super::raw::{RawAudit, RawCors, RawLimit, RawLockout, RawRateLimits, RawTls};
use super::{Problem, Where};
use crate::audit::{AuditSettings, Sink};
use crate::clientip::Cidr;
use crate::cors::CorsPolicy;
use crate::ratelimit::{Limit, LockoutPolicy};

/// Login and API limits (None: not limited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub login_ip: Option<Limit>,
    pub login_account: Option<Limit>,
    pub api_user: Option<Limit>,
    pub api_ip: Option<Limit>,
}

/// TLS termination on the proxy listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    pub cert: String,
    pub key: String,
    /// True: TLS 1.3 only; false: TLS 1.2 and 1.3.
    pub tls13_only: bool,
}

fn problem(p: &mut Vec<Problem>, path: &str, message: impl Into<String>) {
    p.push(Problem::new(Where::Value(path.into()), message));
}

/// A validated `requests per per_seconds`.
pub fn limit(raw: &RawLimit, path: &str, p: &mut Vec<Problem>) -> Option<Limit> {
    if raw.requests == 0 || raw.per_seconds == 0 {
        problem(p, path, "`requests` and `per_seconds` must both be greater than 0");
        return None;
    }
    Some(Limit { requests: raw.requests, window_ms: raw.per_seconds.saturating_mul(1000) })
}

pub fn rate_limits(raw: &RawRateLimits, p: &mut Vec<Problem>) -> RateLimitSettings {
    let mut one = |l: &Option<RawLimit>, path: &str| l.as_ref().and_then(|l| limit(l, path, p));
    RateLimitSettings {
        login_ip: one(&raw.login.per_ip, "rate_limits.login.per_ip"),
        login_account: one(&raw.login.per_account, "rate_limits.login.per_account"),
        api_user: one(&raw.api.per_user, "rate_limits.api.per_user"),
        api_ip: one(&raw.api.per_ip_public, "rate_limits.api.per_ip_public"),
    }
}

pub fn lockout(raw: &RawLockout, p: &mut Vec<Problem>) -> Option<LockoutPolicy> {
    if raw.after_failures == 0 {
        problem(p, "lockout.after_failures", "must be at least 1");
    }
    if raw.base_seconds == 0 || raw.max_seconds < raw.base_seconds {
        problem(p, "lockout", "`base_seconds` must be greater than 0 and at most `max_seconds`");
    }
    Some(LockoutPolicy { after_failures: raw.after_failures, base_seconds: raw.base_seconds, max_seconds: raw.max_seconds })
}

pub fn audit(raw: &RawAudit, store_redis: Option<&str>, source: &Path, p: &mut Vec<Problem>) -> Option<AuditSettings> {
    let sink = match raw.sink.as_str() {
        "none" => None,
        "stdout" => Some(Sink::Stdout),
        "file" => match &raw.file {
            Some(f) => Some(Sink::File(source.parent().unwrap_or(Path::new(".")).join(f))),
            None => {
                problem(p, "audit", "`sink: file` needs `file`");
                return None;
            }
        },
        "redis" => match raw.redis_url.as_deref().or(store_redis) {
            Some(url) if redis::Client::open(url).is_ok() => {
                Some(Sink::Redis { url: url.to_string(), stream: raw.stream.clone(), max_len: raw.max_len })
            }
            Some(_) => {
                problem(p, "audit.redis_url", "not a valid Redis URL");
                return None;
            }
            None => {
                problem(p, "audit", "`sink: redis` needs `redis_url` (or the redis store backend)");
                return None;
            }
        },
        other => {
            problem(p, "audit.sink", format!("unknown sink `{other}`: use stdout, file, redis or none"));
            return None;
        }
    };
    if !(0.0..=1.0).contains(&raw.sample_granted) {
        problem(p, "audit.sample_granted", "must be between 0.0 and 1.0");
    }
    if raw.queue_size == 0 {
        problem(p, "audit.queue_size", "must be at least 1");
    }
    Some(AuditSettings { sink, queue_size: raw.queue_size, sample_granted: raw.sample_granted })
}

pub fn cors(raw: &RawCors, p: &mut Vec<Problem>) -> Option<CorsPolicy> {
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

pub fn trusted_proxies(raw: &[String], p: &mut Vec<Problem>) -> Vec<Cidr> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, s)| s.parse::<Cidr>().map_err(|e| problem(p, &format!("server.trusted_proxies[{i}]"), e)).ok())
        .collect()
}

pub fn tls(raw: &RawTls, source: &Path, p: &mut Vec<Problem>) -> Option<TlsListen> {
    let dir = source.parent().unwrap_or(Path::new("."));
    let tls13_only = match raw.min_version.as_str() {
        "1.3" => true,
        "1.2" => false,
        _ => {
            problem(p, "server.tls.min_version", "use \"1.3\" (default) or \"1.2\"");
            return None;
        }
    };
    let mut file = |key: &str, name: &str| {
        let path = dir.join(name);
        if !path.is_file() {
            problem(p, &format!("server.tls.{key}"), format!("cannot read `{}`", path.display()));
        }
        path.display().to_string()
    };
    Some(TlsListen { cert: file("cert", &raw.cert), key: file("key", &raw.key), tls13_only })
}
