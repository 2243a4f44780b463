//! The generic cell rate algorithm: exact limits with bursts (logins).

use super::{ceil_div, Decision, Limit};

/// One step of the generic cell rate algorithm: `tat` is the stored theoretical arrival time
/// (ms); returns the decision and the TAT to store. Allows bursts of up to `requests`.
pub fn gcra(tat: Option<u64>, now: u64, limit: Limit) -> (Decision, u64) {
    let interval = (limit.window_ms / limit.requests.max(1)).max(1);
    let tolerance = limit.window_ms.saturating_sub(interval);
    let tat = tat.unwrap_or(now).max(now);
    let allow_at = tat.saturating_sub(tolerance);
    if now < allow_at {
        let retry = ceil_div(allow_at - now, 1000).max(1);
        let d = Decision { allowed: false, remaining: 0, reset_seconds: ceil_div(tat - now, 1000), retry_after_seconds: retry };
        return (d, tat);
    }
    let new_tat = tat + interval;
    let used = ceil_div(new_tat - now, interval);
    let remaining = limit.requests.saturating_sub(used);
    (Decision { allowed: true, remaining, reset_seconds: ceil_div(new_tat - now, 1000), retry_after_seconds: 0 }, new_tat)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_PER_MINUTE: Limit = Limit { requests: 10, window_ms: 60_000 };

    #[test]
    fn gcra_allows_a_burst_then_paces() {
        let mut tat = None;
        for i in 0..10 {
            let (d, t) = gcra(tat, 0, TEN_PER_MINUTE);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 9 - i);
            tat = Some(t);
        }
        let (d, t) = gcra(tat, 0, TEN_PER_MINUTE);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_seconds, 6, "one slot frees every 6 s");
        assert_eq!(t, tat.unwrap(), "a refusal does not consume");
        let (d, _) = gcra(tat, 6_000, TEN_PER_MINUTE);
        assert!(d.allowed);
        let (d, _) = gcra(tat, 60_000, TEN_PER_MINUTE);
        assert!(d.allowed && d.remaining == 9, "a full window later, the whole burst is back");
    }

    #[test]
    fn gcra_reports_when_to_retry_and_when_the_burst_is_whole_again() {
        let start = 100_000;
        let mut tat = None;
        for i in 0..10u64 {
            let (d, t) = gcra(tat, start, TEN_PER_MINUTE);
            assert_eq!((d.allowed, d.remaining, d.reset_seconds), (true, 9 - i, 6 * (i + 1)), "request {i}");
            tat = Some(t);
        }
        let (d, _) = gcra(tat, start + 1_500, TEN_PER_MINUTE);
        assert_eq!((d.allowed, d.retry_after_seconds, d.reset_seconds), (false, 5, 59));
    }
}
