//! LLM token budgets: reservations and settlements per user and window.

use async_trait::async_trait;

use super::*;

impl RedisStore {
    /// One user's window hashes: `{user}` is their hash tag, so a script touching all of them
    /// runs on one Cluster node.
    fn token_keys(&self, user: &str, windows: &[Window]) -> Vec<String> {
        windows.iter().map(|w| self.key(&format!("tokens:{{{user}}}:{}", w.key()))).collect()
    }
}

#[async_trait]
impl UsageStore for RedisStore {
    async fn reserve_tokens(&self, user: &str, windows: &[Window], amount: u64) -> Result<Option<(usize, u64)>, StoreError> {
        if windows.is_empty() {
            return Ok(None);
        }
        let mut inv = self.reserve_tokens.call();
        for k in self.token_keys(user, windows) {
            inv.key(k);
        }
        inv.arg(amount);
        for w in windows {
            inv.arg(w.limit);
        }
        for w in windows {
            inv.arg((w.ends_at() + crate::store::TOKEN_WINDOW_GRACE_SECONDS) * 1000);
        }
        let (over, used): (i64, i64) = inv.invoke_async(&mut self.con()?).await.map_err(unavailable)?;
        Ok((over > 0).then(|| ((over - 1) as usize, used.max(0) as u64)))
    }

    async fn settle_tokens(&self, settlements: &[Settlement]) -> Result<(), StoreError> {
        if settlements.is_empty() {
            return Ok(());
        }
        // One pipeline; EVAL (not EVALSHA) so that a script cache emptied by a restart cannot
        // fail part of it. Each call touches one user's keys (one hash tag).
        let mut pipe = redis::pipe();
        for s in settlements {
            let keys = self.token_keys(&s.user, &s.windows);
            pipe.cmd("EVAL")
                .arg(SETTLE_TOKENS)
                .arg(keys.len())
                .arg(keys)
                .arg(s.delta)
                .arg(format!("model:{}", s.model))
                .arg(s.used)
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.con()?).await.map_err(unavailable)?;
        Ok(())
    }

    async fn token_use(&self, user: &str, windows: &[Window]) -> Result<Vec<WindowUse>, StoreError> {
        let hashes = self.hashes(&self.token_keys(user, windows)).await?;
        Ok(hashes
            .into_iter()
            .map(|h| {
                let mut u = WindowUse::default();
                for (field, value) in h {
                    let n = value.parse::<i64>().unwrap_or(0).max(0) as u64;
                    match field.strip_prefix("model:") {
                        Some(model) => {
                            u.by_model.insert(model.to_string(), n);
                        }
                        None if field == "total" => u.total = n,
                        None => {}
                    }
                }
                u
            })
            .collect())
    }
}
