//! Rate limits (GCRA and shared sliding windows), login lockouts and instance heartbeats.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::*;

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
