//! Lowering of `audit:`: the sink, its queue and sampling.

use schemars::JsonSchema;
use serde::Deserialize;

use std::path::Path;

use super::{problem, Problem};
use crate::audit::{AuditSettings, Sink};
use crate::store::RedisSettings;

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

pub(super) fn lower_audit(
    raw: &RawAudit,
    store_redis: Option<&RedisSettings>,
    source: &Path,
    p: &mut Vec<Problem>,
) -> Option<AuditSettings> {
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
        "redis" => match (raw.redis_url.as_deref(), store_redis) {
            (Some(url), _) if redis::Client::open(url).is_ok() => {
                Some(Sink::Redis { redis: RedisSettings::standalone(url), stream: raw.stream.clone(), max_len: raw.max_len })
            }
            (Some(_), _) => {
                problem(p, "audit.redis_url", "not a valid Redis URL");
                return None;
            }
            (None, Some(redis)) => Some(Sink::Redis { redis: redis.clone(), stream: raw.stream.clone(), max_len: raw.max_len }),
            (None, None) => {
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
