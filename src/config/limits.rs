//! Lowering of `rate_limits:` and `lockout:`.

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

use super::{problem, Problem};
use crate::limits::{Limit, LockoutPolicy};
use crate::ratelimit::RateLimitSettings;

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

pub(super) fn limit(raw: &RawLimit, path: &str, p: &mut Vec<Problem>) -> Option<Limit> {
    if raw.requests == 0 || raw.per_seconds == 0 {
        problem(p, path, "`requests` and `per_seconds` must both be greater than 0");
        return None;
    }
    Some(Limit { requests: raw.requests, window_ms: raw.per_seconds.saturating_mul(1000) })
}

pub(super) fn rate_limits(raw: &RawRateLimits, p: &mut Vec<Problem>) -> RateLimitSettings {
    let mut one = |l: &Option<RawLimit>, path: &str| l.as_ref().and_then(|l| limit(l, path, p));
    RateLimitSettings {
        login_ip: one(&raw.login.per_ip, "rate_limits.login.per_ip"),
        login_account: one(&raw.login.per_account, "rate_limits.login.per_account"),
        api_user: one(&raw.api.per_user, "rate_limits.api.per_user"),
        api_ip: one(&raw.api.per_ip_public, "rate_limits.api.per_ip_public"),
    }
}

pub(super) fn lockout(raw: &RawLockout, p: &mut Vec<Problem>) -> Option<LockoutPolicy> {
    if raw.after_failures == 0 {
        problem(p, "lockout.after_failures", "must be at least 1");
    }
    if raw.base_seconds == 0 || raw.max_seconds < raw.base_seconds {
        problem(p, "lockout", "`base_seconds` must be greater than 0 and at most `max_seconds`");
    }
    Some(LockoutPolicy { after_failures: raw.after_failures, base_seconds: raw.base_seconds, max_seconds: raw.max_seconds })
}
