//! Rate-limit arithmetic, pure and clock-free (callers pass `now`): the exact GCRA used for
//! logins, the account lockout rule, and the local sliding windows used for API traffic. The
//! store runs the same arithmetic atomically (Lua) for shared state; the runtime limiter
//! (`ratelimit`, one layer up) sits above the store and decides which to use.

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

/// The `RateLimit-Policy` value of a limit (the same for every request it counts).
pub fn policy_value(name: &str, limit: Limit) -> String {
    let (mut q, mut w) = (itoa::Buffer::new(), itoa::Buffer::new());
    ["\"", name, "\";q=", q.format(limit.requests), ";w=", w.format(limit.window_ms / 1000)].concat()
}

/// The `RateLimit` value after a decision, written into `out` (no allocation).
pub fn state_value<'a>(name: &str, d: &Decision, out: &'a mut [u8; 128]) -> &'a [u8] {
    let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
    let mut len = 0;
    for part in [b"\"", name.as_bytes(), b"\";r=", r.format(d.remaining).as_bytes(), b";t=", t.format(d.reset_seconds).as_bytes()] {
        let end = (len + part.len()).min(out.len());
        out[len..end].copy_from_slice(&part[..end - len]);
        len = end;
    }
    &out[..len]
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
        assert_eq!(policy_value("api_user", TEN_PER_MINUTE), policy);
        assert_eq!(state_value("api_user", &d, &mut [0; 128]), state.as_bytes());
        let long = "x".repeat(200);
        assert_eq!(state_value(&long, &d, &mut [0; 128]).len(), 128, "a name too long is cut, never a panic");
    }
}
