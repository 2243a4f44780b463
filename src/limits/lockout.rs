//! Account lockout after failed logins: doubling lockouts, capped, reset by a success.

/// `lockout:` in gateway.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub after_failures: u32,
    pub base_seconds: u64,
    pub max_seconds: u64,
}

/// Failed-login state of one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockoutState {
    /// Consecutive failures since the last success or lockout.
    pub failures: u32,
    /// Lockouts so far (each doubles the next one), reset by a success.
    pub lockouts: u32,
    /// Locked until (unix seconds), 0 if not locked.
    pub locked_until: u64,
}

impl LockoutPolicy {
    /// The state after a failed login at `now`; locks when the failures reach the threshold.
    pub fn after_failure(&self, mut s: LockoutState, now: u64) -> LockoutState {
        s.failures += 1;
        if s.failures >= self.after_failures {
            let factor = 1u64.checked_shl(s.lockouts.min(32)).unwrap_or(u64::MAX);
            let seconds = self.base_seconds.saturating_mul(factor).min(self.max_seconds);
            s.locked_until = now + seconds;
            s.lockouts += 1;
            s.failures = 0;
        }
        s
    }

    /// How long the state must be kept: until it could no longer affect the next lockout.
    pub fn ttl_seconds(&self, s: &LockoutState, now: u64) -> u64 {
        s.locked_until.saturating_sub(now) + self.max_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_doubles_and_caps() {
        let p = LockoutPolicy { after_failures: 5, base_seconds: 60, max_seconds: 200 };
        let mut s = LockoutState::default();
        for _ in 0..4 {
            s = p.after_failure(s, 1000);
            assert_eq!(s.locked_until, 0);
        }
        s = p.after_failure(s, 1000);
        assert_eq!((s.locked_until, s.lockouts, s.failures), (1060, 1, 0));
        for _ in 0..5 {
            s = p.after_failure(s, 2000);
        }
        assert_eq!(s.locked_until, 2120, "doubled");
        for _ in 0..5 {
            s = p.after_failure(s, 3000);
        }
        assert_eq!(s.locked_until, 3200, "capped at max_seconds");
    }

    /// The state is kept for the rest of the lockout plus the longest lockout, so failures
    /// after it ends still double the next one.
    #[test]
    fn lockout_state_is_kept_while_it_can_still_matter() {
        let p = LockoutPolicy { after_failures: 1, base_seconds: 60, max_seconds: 200 };
        let s = p.after_failure(LockoutState::default(), 1_000);
        assert_eq!(p.ttl_seconds(&s, 1_000), 260);
        assert_eq!(p.ttl_seconds(&s, 1_030), 230);
        assert_eq!(p.ttl_seconds(&s, 5_000), 200, "after the lockout");
    }
}
