//! Approximate sliding windows for API limits: counted locally on the request path, shared
//! between instances by a background sync that hands each instance a share of what is left.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{ceil_div, Decision, Limit};

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    id: u64,
    window_ms: u64,
    /// The total across every instance at the last sync (includes this instance's flushed hits).
    synced: u64,
    /// Hits counted here and not yet flushed to the store.
    pending: u64,
    /// The previous window's total.
    previous: u64,
    /// Hits of an earlier window still to flush: (window id, hits).
    unflushed: Option<(u64, u64)>,
    last_seen: u64,
    requests: u64,
    /// With a shared store: how many hits this instance may admit until the next sync (its share
    /// of what the limit leaves), and how many it has admitted since the last one.
    budget: u64,
    since_sync: u64,
}

/// What the sync sends for one key: hits to add to `window`, and whether the key is still active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    pub key: String,
    pub window: u64,
    pub window_ms: u64,
    pub hits: u64,
    /// The limit's request count (to compute this instance's next share).
    pub limit: u64,
}

/// Local approximate sliding-window counters: `estimate = previous x (1 - elapsed) + current`.
/// With a shared store, `sync` batches the hits and learns the other instances' totals.
///
/// Shared between instances, each instance may only spend half its share of what is left between
/// two syncs (`remaining / (2 x instances)`), so instances hammered at once cannot each spend the
/// whole remainder: the remainder shrinks geometrically and the overshoot stays at a request or
/// two per instance, with no store round trip on the request path.
/// foldhash, seeded per process: the keys are user ids from verified tokens and peer addresses.
type FastHash = foldhash::fast::RandomState;

pub struct SlidingWindows {
    shards: Vec<Mutex<HashMap<String, Window, FastHash>>>,
    hasher: FastHash,
    /// Live instances sharing the counts (0: not shared, no budgets).
    instances: std::sync::atomic::AtomicU64,
}

impl Default for SlidingWindows {
    fn default() -> Self {
        SlidingWindows {
            shards: (0..16).map(|_| Mutex::new(HashMap::default())).collect(),
            hasher: Default::default(),
            instances: Default::default(),
        }
    }
}

impl SlidingWindows {
    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Window, FastHash>> {
        use std::hash::BuildHasher;
        let i = self.hasher.hash_one(key) as usize % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one request for `key` under `limit` at `now` (ms) if it is within the limit.
    pub fn check(&self, key: &str, limit: Limit, now: u64) -> Decision {
        let id = now / limit.window_ms;
        let elapsed = now % limit.window_ms;
        let instances = self.instances.load(std::sync::atomic::Ordering::Relaxed);
        let mut shard = self.shard(key);
        let w = match shard.get_mut(key) {
            Some(w) => w,
            None => {
                // Until the first sync, half a fair share, as after every sync (see `apply`):
                // the other instances spend theirs before anyone has synced, and a full share
                // each let a fast burst overshoot by a quarter of the limit.
                let budget = if instances == 0 { u64::MAX } else { limit.requests.div_ceil(2 * instances) };
                shard.entry(key.to_string()).or_insert(Window {
                    id,
                    window_ms: limit.window_ms,
                    requests: limit.requests,
                    budget,
                    ..Default::default()
                })
            }
        };
        if id > w.id {
            let total = w.synced + w.pending;
            if w.pending > 0 {
                w.unflushed = Some((w.id, w.pending));
            }
            w.previous = if id == w.id + 1 { total } else { 0 };
            w.id = id;
            w.synced = 0;
            w.pending = 0;
        }
        w.last_seen = now;
        let weight = (limit.window_ms - elapsed) as f64 / limit.window_ms as f64;
        let estimate = (w.previous as f64 * weight).floor() as u64 + w.synced + w.pending;
        let reset_seconds = ceil_div(limit.window_ms - elapsed, 1000);
        if estimate >= limit.requests {
            return Decision { allowed: false, remaining: 0, reset_seconds, retry_after_seconds: reset_seconds.max(1) };
        }
        if w.since_sync >= w.budget {
            // This instance's share is spent until the next sync tells it what is left.
            return Decision { allowed: false, remaining: 0, reset_seconds, retry_after_seconds: 1 };
        }
        w.pending += 1;
        w.since_sync += 1;
        Decision { allowed: true, remaining: limit.requests - estimate - 1, reset_seconds, retry_after_seconds: 0 }
    }

    /// The hits to flush and the keys to refresh (active within `idle_ms`); forgets idle keys.
    pub fn take_flushes(&self, now: u64, idle_ms: u64) -> Vec<Flush> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|key, w| {
                if let Some((id, hits)) = w.unflushed.take() {
                    out.push(Flush { key: key.clone(), window: id, window_ms: w.window_ms, hits, limit: w.requests });
                }
                let active = now.saturating_sub(w.last_seen) < idle_ms.max(2 * w.window_ms);
                if active {
                    out.push(Flush { key: key.clone(), window: w.id, window_ms: w.window_ms, hits: w.pending, limit: w.requests });
                }
                active
            });
        }
        out
    }

    /// Records how many instances share the counts (from the store's heartbeat set).
    pub fn set_instances(&self, n: u64) {
        self.instances.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Applies what the store answered for a flush of the current window: `total` across all
    /// instances (including the flushed hits from here), `previous` for the window before; and
    /// hands this instance its share of what `limit` leaves until the next sync.
    pub fn apply(&self, f: &Flush, total: u64, previous: u64, limit: u64, now: u64) {
        let instances = self.instances.load(std::sync::atomic::Ordering::Relaxed).max(1);
        let mut shard = self.shard(&f.key);
        if let Some(w) = shard.get_mut(&f.key) {
            if w.id == f.window {
                w.pending = w.pending.saturating_sub(f.hits);
                w.synced = total;
                w.previous = w.previous.max(previous);
                let elapsed = now % f.window_ms;
                let weight = (f.window_ms - elapsed.min(f.window_ms)) as f64 / f.window_ms as f64;
                let used = (w.previous as f64 * weight).floor() as u64 + total;
                // Hits admitted while the sync was in flight already count against the new share.
                // Half a fair share: the other instances' shares were computed from views just as
                // stale as this one, so full shares overlap; halves shrink the remainder
                // geometrically and keep the overshoot to a request or two.
                w.budget = limit.saturating_sub(used).div_ceil(2 * instances);
                w.since_sync = w.pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_windows_limit_and_carry_the_previous_window() {
        let w = SlidingWindows::default();
        let limit = Limit { requests: 5, window_ms: 1000 };
        let allowed = (0..8).filter(|_| w.check("k", limit, 100).allowed).count();
        assert_eq!(allowed, 5);
        // Half into the next window, half of the previous window's 5 still counts.
        let allowed = (0..8).filter(|_| w.check("k", limit, 1500).allowed).count();
        assert_eq!(allowed, 3);
        // Other keys are independent.
        assert!(w.check("other", limit, 1500).allowed);
    }

    #[test]
    fn sync_hands_over_pending_hits_and_learns_other_instances() {
        let w = SlidingWindows::default();
        let limit = Limit { requests: 10, window_ms: 10_000 };
        for _ in 0..3 {
            w.check("k", limit, 100);
        }
        let flushes = w.take_flushes(200, 60_000);
        assert_eq!(flushes, vec![Flush { key: "k".into(), window: 0, window_ms: 10_000, hits: 3, limit: 10 }]);
        // The store says 9 in total: another instance used 6.
        w.apply(&flushes[0], 9, 0, 10, 250);
        assert!(w.check("k", limit, 300).allowed);
        assert!(!w.check("k", limit, 300).allowed, "10 reached across instances");
    }

    #[test]
    fn shared_instances_only_spend_their_share_between_syncs() {
        let limit = Limit { requests: 100, window_ms: 60_000 };
        let (a, b) = (SlidingWindows::default(), SlidingWindows::default());
        a.set_instances(2);
        b.set_instances(2);
        // Both hammered before they have heard of each other: each takes half a fair share.
        let admitted = |w: &SlidingWindows| (0..200).filter(|_| w.check("k", limit, 1000).allowed).count() as u64;
        let (na, nb) = (admitted(&a), admitted(&b));
        assert_eq!((na, nb), (25, 25));
        // A sync: the store has 100 in total (other instances spent the rest); nothing is left.
        // (Shares after a sync are halves: see `apply`.)
        for w in [&a, &b] {
            let f = w.take_flushes(1100, 60_000).remove(0);
            w.apply(&f, 100, 0, 100, 1100);
        }
        assert_eq!(admitted(&a) + admitted(&b), 0);
        // A tiny limit still admits its first request before any sync (a share rounds up).
        let tiny = Limit { requests: 1, window_ms: 60_000 };
        assert!(a.check("tiny", tiny, 1000).allowed);
        assert!(!a.check("tiny", tiny, 1000).allowed);
    }

    #[test]
    fn decisions_report_what_is_left_and_when_the_window_resets() {
        let w = SlidingWindows::default();
        let limit = Limit { requests: 5, window_ms: 60_000 };
        let d = w.check("k", limit, 1_500);
        assert_eq!((d.allowed, d.remaining, d.reset_seconds, d.retry_after_seconds), (true, 4, 59, 0));
        let d = w.check("k", limit, 30_000);
        assert_eq!((d.remaining, d.reset_seconds), (3, 30));
    }

    #[test]
    fn a_new_window_hands_the_old_ones_unsynced_hits_to_the_next_flush() {
        let w = SlidingWindows::default();
        let limit = Limit { requests: 10, window_ms: 10_000 };
        for _ in 0..3 {
            w.check("k", limit, 100);
        }
        w.check("k", limit, 10_100);
        let flushes = w.take_flushes(10_200, 60_000);
        assert_eq!(
            flushes,
            vec![
                Flush { key: "k".into(), window: 0, window_ms: 10_000, hits: 3, limit: 10 },
                Flush { key: "k".into(), window: 1, window_ms: 10_000, hits: 1, limit: 10 },
            ]
        );
        // Synced, then a new window: nothing of the old one is left to send.
        w.apply(&flushes[1], 4, 3, 10, 10_300);
        w.check("k", limit, 20_100);
        let windows: Vec<u64> = w.take_flushes(20_200, 60_000).iter().map(|f| f.window).collect();
        assert_eq!(windows, vec![2]);
    }

    #[test]
    fn a_key_is_synced_while_active_and_forgotten_after_two_windows_idle() {
        let w = SlidingWindows::default();
        let limit = Limit { requests: 10, window_ms: 10_000 };
        w.check("k", limit, 0);
        assert_eq!(w.take_flushes(19_999, 1_000).len(), 1, "idle less than two windows: still synced");
        assert!(w.take_flushes(20_000, 1_000).is_empty(), "idle two windows: forgotten");
    }

    /// Three instances: before any sync each admits half a fair share; after one, half a fair
    /// share of what the limit leaves, counting the previous window by how much of it still
    /// overlaps the sliding window.
    #[test]
    fn three_instances_share_what_the_limit_leaves() {
        let limit = Limit { requests: 100, window_ms: 60_000 };
        let w = SlidingWindows::default();
        w.set_instances(3);
        let admitted = |w: &SlidingWindows, now| (0..200).filter(|_| w.check("k", limit, now).allowed).count();
        assert_eq!(admitted(&w, 1_000), 17, "100 / (2 x 3), rounded up");
        let fresh = SlidingWindows::default();
        fresh.set_instances(3);
        assert!(fresh.check("k", limit, 90_000).allowed);
        let f = fresh.take_flushes(90_000, 60_000).remove(0);
        // The store: 20 this window across instances, 40 the window before, half of which still
        // counts half-way through this one: 40 used, 60 left, a sixth of that here.
        fresh.apply(&f, 20, 40, 100, 90_000);
        assert_eq!(admitted(&fresh, 90_000), 10);
    }
}
