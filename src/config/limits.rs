//! Lowering of `rate_limits:` and `lockout:`.

use super::raw::{RawLimit, RawLockout, RawRateLimits};
use super::{problem, Problem};
use crate::limits::{Limit, LockoutPolicy};
use crate::ratelimit::RateLimitSettings;

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
