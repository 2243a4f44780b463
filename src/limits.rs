//! Rate-limit arithmetic, pure and clock-free (callers pass `now`): the exact GCRA used for
//! logins, the account lockout rule, and the local sliding windows used for API traffic. The
//! store runs the same arithmetic atomically (Lua) for shared state; the runtime limiter
//! ([`crate::ratelimit`]) sits above the store and decides which to use.

mod gcra;
mod lockout;
mod windows;

pub use gcra::gcra;
pub use lockout::{LockoutPolicy, LockoutState};
pub use windows::{Flush, SlidingWindows};

/// `requests` per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: u64,
    pub window_ms: u64,
}

/// The outcome of one check, with what the RateLimit headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests left in the current window after this one.
    pub remaining: u64,
    /// Seconds until the quota is fully available again (RateLimit `t`).
    pub reset_seconds: u64,
    /// Seconds until the next request would be allowed (Retry-After), 0 if allowed.
    pub retry_after_seconds: u64,
}

pub(crate) fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

/// The `RateLimit-Policy` and `RateLimit` header values (draft-ietf-httpapi-ratelimit-headers).
pub fn headers(name: &str, limit: Limit, d: &Decision) -> [(&'static str, String); 2] {
    // Written by hand: these run on every limited request, and `format!` costs several times more.
    let item = |a: &str, x: u64, b: &str, y: u64| {
        let (mut x_buf, mut y_buf) = (itoa::Buffer::new(), itoa::Buffer::new());
        ["\"", name, "\";", a, x_buf.format(x), b, y_buf.format(y)].concat()
    };
    [
        ("ratelimit-policy", item("q=", limit.requests, ";w=", limit.window_ms / 1000)),
        ("ratelimit", item("r=", d.remaining, ";t=", d.reset_seconds)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_PER_MINUTE: Limit = Limit { requests: 10, window_ms: 60_000 };

    #[test]
    fn ratelimit_header_values() {
        let d = Decision { allowed: true, remaining: 7, reset_seconds: 42, retry_after_seconds: 0 };
        let [(p, policy), (r, state)] = headers("api_user", TEN_PER_MINUTE, &d);
        assert_eq!((p, policy.as_str()), ("ratelimit-policy", "\"api_user\";q=10;w=60"));
        assert_eq!((r, state.as_str()), ("ratelimit", "\"api_user\";r=7;t=42"));
    }
}
