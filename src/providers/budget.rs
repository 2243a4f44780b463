//! Token budgets at run time (`llm_limits`): one atomic store operation reserves a call's tokens
//! in the caller's minute and day windows before it is forwarded; after the answer the
//! reservation is settled to the real usage (off the request path). `GET /auth/usage` reads the
//! windows back. Every instance shares the windows through the store.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::llm::budget::{self, BudgetRules, Window};
use crate::store::{Settlement, StoreError, UsageStore};

/// How long settlements gather before they are written (in one round trip).
const SETTLE_EVERY: Duration = Duration::from_millis(20);

/// Settlements waiting to be written, summed per (user, windows, model): (delta, used).
type Pending = HashMap<(String, [Window; 2], String), (i64, u64)>;

/// A call's tokens, reserved in its windows until it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    user: String,
    windows: [Window; 2],
    amount: u64,
}

/// What the budget says of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead (the reservation to settle, if the tokens could be reserved).
    Go(Option<Reservation>),
    /// Over this window's limit, which holds `used` tokens.
    Over { window: Window, used: u64 },
    /// The store could not be asked, and `sessions.on_store_outage` is `deny`.
    Unavailable,
}

/// The budget service.
pub struct Budgets {
    store: Arc<dyn UsageStore>,
    /// Refuse calls when the store cannot be asked (else they go ahead uncounted).
    deny_on_outage: bool,
    pending: Mutex<Pending>,
    /// A flush is scheduled.
    flushing: AtomicBool,
}

impl Budgets {
    pub fn new(store: Arc<dyn UsageStore>, deny_on_outage: bool) -> Self {
        Budgets { store, deny_on_outage, pending: Mutex::new(HashMap::new()), flushing: AtomicBool::new(false) }
    }

    /// Reserves a call's tokens: its completion allowance (`max_tokens` or `reserve_tokens`)
    /// and its prompt estimate, at most a whole window (a call asking for more may still run
    /// in an unused window; its real use is counted when it is settled).
    pub async fn reserve(
        &self,
        rules: &BudgetRules,
        user: &str,
        role: Option<&str>,
        max_tokens: Option<u64>,
        prompt: u64,
        now: u64,
    ) -> Verdict {
        let windows = budget::windows(rules.limits(role), now);
        let smallest = windows.iter().map(|w| w.limit).min().unwrap_or(budget::UNLIMITED);
        let amount = rules.reservation(max_tokens, prompt).min(smallest);
        match self.store.reserve_tokens(user, &windows, amount).await {
            Ok(None) => Verdict::Go(Some(Reservation { user: user.to_string(), windows, amount })),
            Ok(Some((i, used))) => Verdict::Over { window: windows[i.min(1)], used },
            Err(e) => {
                tracing::warn!(error = %e, "token budget: the store could not reserve; {}", if self.deny_on_outage { "refusing" } else { "the call goes ahead uncounted" });
                if self.deny_on_outage {
                    Verdict::Unavailable
                } else {
                    Verdict::Go(None)
                }
            }
        }
    }

    /// Settles a reservation to the tokens really used, written behind: settlements gather for
    /// a few milliseconds and go to the store together (so an LLM call costs the store one round
    /// trip, its reservation). Until then the reservation counts, which errs towards refusing.
    pub fn settle(self: &Arc<Self>, r: Reservation, used: u64, model: &str) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let entry = pending.entry((r.user, r.windows, model.to_string())).or_default();
            entry.0 += used as i64 - r.amount as i64;
            entry.1 += used;
        }
        if self.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(SETTLE_EVERY).await;
            // Cleared before taking the batch: a settlement after this point schedules the next.
            this.flushing.store(false, Ordering::Release);
            this.flush().await;
        });
    }

    /// Writes the pending settlements.
    pub async fn flush(&self) {
        let batch: Vec<Settlement> = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .map(|((user, windows, model), (delta, used))| Settlement { user, windows, model, delta, used })
            .collect();
        if let Err(e) = self.store.settle_tokens(&batch).await {
            tracing::warn!(error = %e, settlements = batch.len(), "token budget: settlements were lost; their reservations stay counted");
        }
    }

    /// The caller's windows: limit, used (reservations in flight included), remaining, reset,
    /// and settled use by model.
    pub async fn report(&self, rules: &BudgetRules, user: &str, role: Option<&str>, now: u64) -> Result<Value, StoreError> {
        let limits = rules.limits(role);
        let windows = budget::windows(limits, now);
        let uses = self.store.token_use(user, &windows).await?;
        let report: Vec<Value> = windows.iter().zip(uses).map(|(w, u)| window_report(w, u.total, &u.by_model, now)).collect();
        Ok(json!({ "user_id": user, "unlimited": limits.unlimited, "windows": report }))
    }
}

/// One window as `/auth/usage` shows it.
pub fn window_report(w: &Window, used: u64, by_model: &std::collections::BTreeMap<String, u64>, now: u64) -> Value {
    let (limit, remaining) = if w.limits() { (json!(w.limit), json!(w.limit.saturating_sub(used))) } else { (Value::Null, Value::Null) };
    json!({
        "window": w.span.as_str(),
        "limit": limit,
        "used": used,
        "remaining": remaining,
        "resets_in_seconds": w.reset_in(now),
        "by_model": by_model,
    })
}

/// `RateLimit-Policy` and `RateLimit` for a window a call went over.
pub fn limit_headers(w: &Window, used: u64, now: u64) -> [(&'static str, String); 2] {
    let name = format!("tokens_{}", w.span.as_str());
    [
        ("ratelimit-policy", format!("\"{name}\";q={};w={}", w.limit, w.span.seconds())),
        ("ratelimit", format!("\"{name}\";r={};t={}", w.limit.saturating_sub(used), w.reset_in(now))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::budget::TokenLimits;
    use crate::store::memory::MemoryStore;

    fn rules() -> BudgetRules {
        let default = TokenLimits { per_minute: Some(100), per_day: Some(1000), unlimited: false };
        let admin = TokenLimits { unlimited: true, ..default };
        BudgetRules { default, roles: [("admin".to_string(), admin)].into(), reserve_tokens: 40 }
    }

    #[tokio::test]
    async fn reservations_stop_at_the_limit_and_settle_to_real_use() {
        let b = Arc::new(Budgets::new(Arc::new(MemoryStore::new()), false));
        let r = rules();
        let now = crate::clock::unix_now();
        // 40 + 10 reserved twice = 100: the third does not fit this minute.
        let first = match b.reserve(&r, "u", Some("user"), None, 10, now).await {
            Verdict::Go(Some(res)) => res,
            other => panic!("{other:?}"),
        };
        assert!(matches!(b.reserve(&r, "u", Some("user"), None, 10, now).await, Verdict::Go(Some(_))));
        match b.reserve(&r, "u", Some("user"), None, 10, now).await {
            Verdict::Over { window, used } => assert_eq!((window.span.as_str(), used), ("minute", 100)),
            other => panic!("{other:?}"),
        }
        // Settling the first to 20 tokens refunds 30: a call of 30 now fits.
        b.settle(first, 20, "smart");
        b.flush().await;
        assert!(matches!(b.reserve(&r, "u", Some("user"), Some(20), 10, now).await, Verdict::Go(Some(_))));
        let report = b.report(&r, "u", Some("user"), now).await.unwrap();
        assert_eq!(report["windows"][0]["used"], 100);
        assert_eq!(report["windows"][0]["remaining"], 0);
        assert_eq!(report["windows"][0]["by_model"]["smart"], 20);
        assert_eq!(report["windows"][1]["limit"], 1000);
        // The next minute starts empty; the day still counts.
        assert!(matches!(b.reserve(&r, "u", Some("user"), None, 10, now + 60).await, Verdict::Go(Some(_))));
        // Other users and unlimited roles are not affected.
        assert!(matches!(b.reserve(&r, "v", Some("user"), None, 10, now).await, Verdict::Go(Some(_))));
        for _ in 0..5 {
            assert!(matches!(b.reserve(&r, "boss", Some("admin"), Some(1_000_000), 0, now).await, Verdict::Go(Some(_))));
        }
        let boss = b.report(&r, "boss", Some("admin"), now).await.unwrap();
        assert_eq!((boss["unlimited"].as_bool(), boss["windows"][0]["limit"].is_null()), (Some(true), true));
    }

    #[tokio::test]
    async fn a_call_larger_than_a_window_runs_only_in_an_unused_one() {
        let b = Budgets::new(Arc::new(MemoryStore::new()), false);
        let r = rules();
        assert!(matches!(b.reserve(&r, "u", None, Some(5000), 0, 0).await, Verdict::Go(Some(Reservation { amount: 100, .. }))));
        assert!(matches!(b.reserve(&r, "u", None, Some(5000), 0, 0).await, Verdict::Over { .. }));
    }

    /// A store that cannot be reached.
    struct Down;

    #[async_trait::async_trait]
    impl crate::store::Backend for Down {
        async fn ping(&self) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
    }

    #[async_trait::async_trait]
    impl UsageStore for Down {
        async fn reserve_tokens(&self, _: &str, _: &[Window], _: u64) -> Result<Option<(usize, u64)>, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn settle_tokens(&self, _: &[Settlement]) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn token_use(&self, _: &str, _: &[Window]) -> Result<Vec<crate::store::WindowUse>, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
    }

    #[tokio::test]
    async fn a_store_that_is_down_lets_calls_through_uncounted_or_refuses_them_as_configured() {
        let r = rules();
        let lenient = Budgets::new(Arc::new(Down), false);
        assert_eq!(lenient.reserve(&r, "u", None, None, 10, 0).await, Verdict::Go(None), "serve_cached: uncounted");
        let strict = Budgets::new(Arc::new(Down), true);
        assert_eq!(strict.reserve(&r, "u", None, None, 10, 0).await, Verdict::Unavailable, "deny: refused");
        assert!(strict.report(&r, "u", None, 0).await.is_err());
        // Unlimited callers are counted too, so the store is asked for them as well.
        assert_eq!(strict.reserve(&r, "boss", Some("admin"), None, 10, 0).await, Verdict::Unavailable);
    }

    #[test]
    fn refusals_carry_ratelimit_headers() {
        let w = Window { span: crate::llm::budget::Span::Minute, index: 10, limit: 100 };
        let [policy, state] = limit_headers(&w, 130, 630);
        assert_eq!(policy.1, "\"tokens_minute\";q=100;w=60");
        assert_eq!(state.1, "\"tokens_minute\";r=0;t=30");
    }
}
