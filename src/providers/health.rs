//! Provider health (the seed's ProviderHealthTracker rules) and the ordering of a fallback
//! chain. Pure: every function takes `now` in milliseconds, so tests drive the clock.

use serde::{Deserialize, Serialize};

/// A provider's health class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Healthy,
    Degraded,
    Unhealthy,
}

impl Status {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "healthy" => Some(Status::Healthy),
            "degraded" => Some(Status::Degraded),
            "unhealthy" => Some(Status::Unhealthy),
            _ => None,
        }
    }
}

/// `health:` in gateway.yaml.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub failure_threshold: u32,
    pub unhealthy_ms: u64,
    pub degraded_latency_ms: u64,
    /// A provider degraded by failures is tried again in its configured place after this long
    /// without a new failure.
    pub degraded_ms: u64,
    /// When an unhealthy period ends, this many trial requests (across every instance) may go
    /// to the provider, in its configured place, until one of them answers.
    pub half_open_trials: u32,
    /// Each unhealthy period after a failed trial is this many times the one before...
    pub unhealthy_backoff: f64,
    /// ...up to this long (ms).
    pub max_unhealthy_ms: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            failure_threshold: 3,
            unhealthy_ms: 300_000,
            degraded_latency_ms: 2_000,
            degraded_ms: 30_000,
            half_open_trials: 1,
            unhealthy_backoff: 2.0,
            max_unhealthy_ms: 3_600_000,
        }
    }
}

impl Rules {
    /// The length of the `ejection`-th unhealthy period in a row (1 for the first).
    pub fn unhealthy_period(&self, ejection: u32) -> u64 {
        let factor = self.unhealthy_backoff.max(1.0).powi(ejection.saturating_sub(1).min(64) as i32);
        let period = (self.unhealthy_ms as f64 * factor).min(self.max_unhealthy_ms.max(self.unhealthy_ms) as f64);
        period as u64
    }

    /// How long a claimed trial may go without an answer before another may be sent (a trial
    /// whose client went away must not keep the provider out for good).
    pub fn trial_timeout(&self) -> u64 {
        self.unhealthy_ms.clamp(1_000, 60_000)
    }
}

/// Weight of the newest response time in the moving average.
const ALPHA: f64 = 0.3;

/// What is known of one provider (shared through the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct State {
    pub status: Status,
    /// Last signal (ms since the epoch), 0 if none.
    pub last_check: u64,
    /// Moving average of response times (ms), None before the first response.
    pub response_time_ms: Option<f64>,
    pub consecutive_failures: u32,
    pub reason: Option<String>,
    /// Out of rotation until then (ms): an unhealthy period or a manual override.
    pub unhealthy_until: u64,
    /// Out of rotation until then (ms) after a 429 with Retry-After.
    pub retry_after_until: u64,
    /// An operator's override holds until then (ms): passive signals (a request that was in
    /// flight when it was set, a probe) do not change the status before.
    #[serde(default)]
    pub manual_until: u64,
    /// A provider degraded by failures is ordered as healthy again from then on (ms; 0: not
    /// degraded by failures).
    #[serde(default)]
    pub degraded_until: u64,
    /// Unhealthy periods in a row (a failed trial adds one; a success resets).
    #[serde(default)]
    pub ejections: u32,
    /// Half-open: trials that may still be claimed in this period (see [`State::claim_trial`]).
    #[serde(default)]
    pub trials_left: u32,
    /// Half-open: the trials claimed lapse then (ms) if none has answered.
    #[serde(default)]
    pub trials_until: u64,
    /// Bumped on every change (optimistic concurrency in the store).
    pub version: u64,
}

impl State {
    fn average(&mut self, rt_ms: f64) {
        self.response_time_ms = Some(match self.response_time_ms {
            Some(avg) => ALPHA * rt_ms + (1.0 - ALPHA) * avg,
            None => rt_ms,
        });
    }

    /// A successful response: resets failures; a half-open provider becomes healthy; a slow
    /// moving average makes it degraded.
    pub fn record_success(&mut self, rt_ms: f64, now: u64, rules: &Rules) {
        self.average(rt_ms);
        if now < self.manual_until {
            self.last_check = now;
            self.version += 1;
            return;
        }
        self.consecutive_failures = 0;
        self.last_check = now;
        self.unhealthy_until = 0;
        self.degraded_until = 0;
        self.ejections = 0;
        self.trials_left = 0;
        self.trials_until = 0;
        let slow = self.response_time_ms.is_some_and(|avg| avg > rules.degraded_latency_ms as f64);
        self.status = if slow { Status::Degraded } else { Status::Healthy };
        self.reason = slow.then(|| "slow responses".to_string());
        self.version += 1;
    }

    /// A failed response or attempt: `failure_threshold` in a row make it unhealthy for
    /// `unhealthy_ms`; fewer make it degraded. A failure while half-open (a failed trial) makes
    /// it unhealthy again at once, for a period `unhealthy_backoff` times longer (capped).
    pub fn record_failure(&mut self, reason: &str, rt_ms: Option<f64>, now: u64, rules: &Rules) {
        if let Some(rt) = rt_ms {
            self.average(rt);
        }
        self.consecutive_failures += 1;
        self.last_check = now;
        if now < self.manual_until {
            // The operator's status and reason hold; the failure is still counted.
            self.version += 1;
            return;
        }
        self.reason = Some(reason.to_string());
        if self.is_half_open(now) {
            self.eject(self.ejections.saturating_add(1), now, rules);
        } else if self.status == Status::Unhealthy {
            // A failure inside the period (tried in panic mode): the period starts again.
            self.eject(self.ejections.max(1), now, rules);
        } else if self.consecutive_failures >= rules.failure_threshold {
            self.eject(1, now, rules);
        } else {
            self.status = Status::Degraded;
            self.degraded_until = now.saturating_add(rules.degraded_ms);
        }
        self.version += 1;
    }

    /// Out of rotation for the `ejection`-th period in a row; trials are ready for its end.
    fn eject(&mut self, ejection: u32, now: u64, rules: &Rules) {
        self.status = Status::Unhealthy;
        self.ejections = ejection;
        self.unhealthy_until = now.saturating_add(rules.unhealthy_period(ejection));
        self.trials_left = rules.half_open_trials.max(1);
        self.trials_until = 0;
    }

    /// Unhealthy, and its period (and any operator's hold or Retry-After pause) has ended: trial
    /// requests decide what it is.
    pub fn is_half_open(&self, now: u64) -> bool {
        self.status == Status::Unhealthy && now >= self.unhealthy_until && now >= self.manual_until && now >= self.retry_after_until
    }

    /// Half-open with a trial still to be had (none left to claim, or the claimed ones lapsed).
    pub fn trial_open(&self, now: u64) -> bool {
        self.is_half_open(now) && (self.trials_left > 0 || now >= self.trials_until)
    }

    /// Claims one trial request of a half-open provider; false when every trial of this period
    /// is out and none has lapsed. Claims lapse after [`Rules::trial_timeout`].
    pub fn claim_trial(&mut self, now: u64, rules: &Rules) -> bool {
        if !self.trial_open(now) {
            return false;
        }
        if self.trials_left == 0 {
            // The trials claimed earlier never answered: a new round.
            self.trials_left = rules.half_open_trials.max(1);
        }
        self.trials_left -= 1;
        self.trials_until = now.saturating_add(rules.trial_timeout());
        self.version += 1;
        true
    }

    /// A 429 with Retry-After: out of rotation for that long (and a failure).
    pub fn record_rate_limited(&mut self, retry_after_ms: u64, now: u64, rules: &Rules) {
        self.record_failure("rate limited (429)", None, now, rules);
        self.retry_after_until = self.retry_after_until.max(now + retry_after_ms);
    }

    /// Manual or probe-driven marks.
    pub fn mark(&mut self, status: Status, reason: Option<String>, duration_ms: Option<u64>, now: u64) {
        self.status = status;
        self.reason = reason;
        self.last_check = now;
        self.unhealthy_until = match (status, duration_ms) {
            (Status::Unhealthy, Some(d)) => now + d,
            (Status::Unhealthy, None) => u64::MAX,
            _ => 0,
        };
        self.manual_until = match (status, duration_ms) {
            (Status::Healthy, _) => 0,
            (_, Some(d)) => now.saturating_add(d),
            (_, None) => u64::MAX,
        };
        self.degraded_until = 0;
        if status == Status::Healthy {
            self.consecutive_failures = 0;
            self.retry_after_until = 0;
            self.ejections = 0;
        }
        // An operator's unhealthy ends like a period: one trial decides.
        self.trials_left = 1;
        self.trials_until = 0;
        self.version += 1;
    }

    /// Not inside an unhealthy period or a Retry-After pause, and, when half-open, with a trial
    /// to be had (while every trial is out, the provider waits for their answer).
    pub fn is_available(&self, now: u64) -> bool {
        now >= self.unhealthy_until && now >= self.retry_after_until && (!self.is_half_open(now) || self.trial_open(now))
    }

    /// The class a chain orders this provider in at `now`: its status, except that a provider
    /// degraded by failures is tried again in its configured place once `degraded_ms` has passed
    /// without a new failure (its failures still count towards the threshold), and a half-open
    /// one is tried in its configured place (by its trial requests). A provider degraded for
    /// slowness, or by an operator, keeps its class.
    pub fn class(&self, now: u64) -> Status {
        match self.status {
            Status::Degraded if self.degraded_until != 0 && now >= self.degraded_until && now >= self.manual_until => Status::Healthy,
            Status::Unhealthy if self.is_half_open(now) => Status::Healthy,
            s => s,
        }
    }

    /// Healthy now.
    pub fn is_healthy(&self, now: u64) -> bool {
        self.status == Status::Healthy && self.is_available(now)
    }
}

/// How a chain orders providers inside each health class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// The configured order.
    #[default]
    Config,
    /// Fastest moving-average response time first (unknown last).
    Latency,
}

/// The chain ordered by health class at `now` ([`State::class`]): healthy, then degraded, then
/// unhealthy, stable inside each class (configured order, or latency). `state(i)` gives the i-th
/// provider's state.
pub fn order<'a>(chain: &[usize], state: impl Fn(usize) -> &'a State, mode: Order, now: u64) -> Vec<usize> {
    let mut out = chain.to_vec();
    let key = |i: &usize| {
        let s = state(*i);
        let latency = match mode {
            Order::Config => 0.0,
            Order::Latency => s.response_time_ms.unwrap_or(f64::MAX),
        };
        (s.class(now), latency)
    };
    out.sort_by(|a, b| key(a).partial_cmp(&key(b)).unwrap_or(std::cmp::Ordering::Equal));
    out
}

/// Which providers to try, in order: the available ones by health; if none is available,
/// every provider in chain order (panic mode: better to try than to refuse).
pub fn attempts<'a>(chain: &[usize], state: impl Fn(usize) -> &'a State + Copy, mode: Order, now: u64) -> (Vec<usize>, bool) {
    let ordered: Vec<usize> = order(chain, state, mode, now).into_iter().filter(|i| state(*i).is_available(now)).collect();
    if ordered.is_empty() {
        (chain.to_vec(), true)
    } else {
        (ordered, false)
    }
}

/// The first healthy provider of a list, if any.
pub fn pick_healthy<'a>(chain: &[usize], state: impl Fn(usize) -> &'a State, now: u64) -> Option<usize> {
    chain.iter().copied().find(|i| state(*i).is_healthy(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_override_holds_against_passive_signals_until_it_ends() {
        let rules = Rules { failure_threshold: 2, unhealthy_ms: 1_000, ..RULES };
        let mut s = State::default();
        s.mark(Status::Unhealthy, Some("maintenance".into()), Some(60_000), 1_000);
        // A request that was in flight when the override was set succeeds, another fails.
        // Both are still signals: counted, and the version moves on for the store's
        // compare-and-set.
        let v = s.version;
        s.record_success(50.0, 1_010, &rules);
        assert_eq!(s.version, v + 1);
        s.record_failure("500", None, 1_020, &rules);
        s.record_failure("500", None, 1_030, &rules);
        assert_eq!((s.version, s.consecutive_failures, s.last_check), (v + 3, 2, 1_030));
        assert_eq!((s.status, s.reason.as_deref()), (Status::Unhealthy, Some("maintenance")));
        assert_eq!(s.unhealthy_until, 61_000, "a passive failure does not shorten the override");
        assert!(!s.is_available(30_000));
        // Once it ends, passive signals rule again.
        s.record_success(50.0, 61_000, &rules);
        assert!(s.is_healthy(61_000));
        // Marking healthy ends a hold at once.
        s.mark(Status::Degraded, None, Some(60_000), 62_000);
        s.mark(Status::Healthy, None, None, 62_001);
        s.record_failure("500", None, 62_002, &rules);
        assert_eq!(s.status, Status::Degraded, "passive again after an operator's healthy");
    }

    /// The names the admin API takes and reports, the store keeps and metrics label.
    #[test]
    fn statuses_have_their_documented_names() {
        for (s, name) in [(Status::Healthy, "healthy"), (Status::Degraded, "degraded"), (Status::Unhealthy, "unhealthy")] {
            assert_eq!((s.as_str(), Status::parse(name)), (name, Some(s)));
        }
        for bad in ["", "Healthy", "down", "ok"] {
            assert_eq!(Status::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_moving_average_weighs_the_newest_response_at_three_tenths() {
        let mut s = State::default();
        s.record_success(100.0, 0, &RULES);
        assert_eq!(s.response_time_ms, Some(100.0), "the first response is the average");
        s.record_success(200.0, 0, &RULES);
        assert!((s.response_time_ms.unwrap() - 130.0).abs() < 1e-9, "{:?}", s.response_time_ms);
        s.record_failure("timeout", Some(1_130.0), 0, &RULES);
        assert!((s.response_time_ms.unwrap() - 430.0).abs() < 1e-9, "a timed failure counts: {:?}", s.response_time_ms);
    }

    #[test]
    fn only_an_average_above_the_latency_bound_is_slow() {
        let mut at_bound = State::default();
        at_bound.record_success(2_000.0, 0, &RULES);
        assert_eq!((at_bound.status, at_bound.reason.as_deref()), (Status::Healthy, None));
        let mut above = State::default();
        above.record_success(2_000.5, 0, &RULES);
        assert_eq!((above.status, above.reason.as_deref()), (Status::Degraded, Some("slow responses")));
    }

    /// The store writes a state back only over the version it read: every change moves it on.
    #[test]
    fn every_change_moves_the_version_on() {
        let mut s = State::default();
        let mut seen = vec![s.version];
        s.record_success(10.0, 1, &RULES);
        seen.push(s.version);
        s.record_failure("500", None, 2, &RULES);
        seen.push(s.version);
        s.record_rate_limited(1_000, 3, &RULES);
        seen.push(s.version);
        s.mark(Status::Degraded, None, None, 4);
        seen.push(s.version);
        assert!(seen.windows(2).all(|w| w[1] > w[0]), "{seen:?}");
    }

    #[test]
    fn an_operators_marks_take_a_provider_out_and_back() {
        // Unhealthy without a duration: out of rotation until an operator says otherwise.
        let mut s = State::default();
        s.mark(Status::Unhealthy, Some("decommissioned".into()), None, 1_000);
        assert!(!s.is_available(1_000 + 365 * 86_400_000));
        s.mark(Status::Unhealthy, None, Some(5_000), 1_000);
        assert!(!s.is_available(5_999) && s.is_available(6_000));
        // Healthy clears the failure count and a Retry-After pause; degraded keeps them.
        let mut p = State::default();
        p.record_failure("500", None, 0, &RULES);
        p.record_rate_limited(60_000, 0, &RULES);
        p.mark(Status::Degraded, None, None, 1);
        assert_eq!((p.consecutive_failures, p.is_available(1)), (2, false));
        p.mark(Status::Healthy, None, None, 2);
        assert_eq!((p.consecutive_failures, p.is_available(2), p.is_healthy(2)), (0, true, true));
        // One failure after an operator's healthy does not reach the threshold.
        p.record_failure("500", None, 3, &RULES);
        p.record_failure("500", None, 4, &RULES);
        assert_eq!(p.status, Status::Degraded);
    }

    const RULES: Rules = Rules {
        failure_threshold: 3,
        unhealthy_ms: 300_000,
        degraded_latency_ms: 2_000,
        degraded_ms: 30_000,
        half_open_trials: 1,
        unhealthy_backoff: 2.0,
        max_unhealthy_ms: 1_200_000,
    };

    /// The half-open rows of the state table in docs/llm.md, step by step: a primary beside a healthy
    /// fallback, its period ending, a trial in its place, a failed trial backing off, a
    /// successful one healing it.
    #[test]
    fn a_provider_whose_period_ends_is_tried_in_its_place_by_a_bounded_number_of_trials() {
        let rules = Rules { half_open_trials: 2, ..RULES };
        let mut states = vec![State::default(); 2];
        let order_at = |states: &Vec<State>, now| attempts(&[0, 1], |i| &states[i], Order::Config, now).0;
        for t in 0..3 {
            states[0].record_failure("500", None, t, &rules);
        }
        // unhealthy: skipped while the period lasts
        assert_eq!((states[0].status, states[0].ejections), (Status::Unhealthy, 1));
        assert_eq!(order_at(&states, 300_001), vec![1]);
        assert!(!states[0].is_half_open(300_001));
        // --the period ends--> half-open: in its configured place, first again
        let end = 2 + 300_000;
        assert!(states[0].is_half_open(end) && states[0].trial_open(end));
        assert_eq!(states[0].class(end), Status::Healthy);
        assert_eq!(order_at(&states, end), vec![0, 1]);
        // two trials may be claimed (across instances: the claim is a compare-and-set of this
        // state in the store), a third waits for their answer and the fallback serves it
        assert!(states[0].claim_trial(end, &rules));
        assert!(states[0].claim_trial(end + 1, &rules));
        assert!(!states[0].claim_trial(end + 2, &rules));
        assert_eq!(order_at(&states, end + 2), vec![1], "while the trials are out, the fallback serves");
        // a trial that never answers lapses after the trial timeout: another may go
        let lapse = end + 1 + rules.trial_timeout();
        assert!(!states[0].trial_open(lapse - 1) && states[0].trial_open(lapse));
        assert!(states[0].claim_trial(lapse, &rules));
        // --a trial fails--> unhealthy again, for a period `unhealthy_backoff` times longer
        states[0].record_failure("500", None, lapse, &rules);
        assert_eq!((states[0].status, states[0].ejections, states[0].unhealthy_until), (Status::Unhealthy, 2, lapse + 600_000));
        assert_eq!(order_at(&states, lapse + 599_999), vec![1]);
        // ... and again, capped at `max_unhealthy_ms`
        let next = lapse + 600_000;
        assert!(states[0].claim_trial(next, &rules));
        states[0].record_failure("timeout", None, next, &rules);
        assert_eq!(states[0].unhealthy_until, next + 1_200_000);
        let next = next + 1_200_000;
        assert!(states[0].claim_trial(next, &rules));
        states[0].record_failure("timeout", None, next, &rules);
        assert_eq!((states[0].ejections, states[0].unhealthy_until), (4, next + 1_200_000), "capped");
        // --a trial succeeds--> healthy, the backoff forgotten
        let next = next + 1_200_000;
        assert!(states[0].claim_trial(next, &rules));
        states[0].record_success(80.0, next, &rules);
        assert_eq!((states[0].status, states[0].ejections, states[0].consecutive_failures), (Status::Healthy, 0, 0));
        assert_eq!(order_at(&states, next), vec![0, 1]);
        for t in 0..3 {
            states[0].record_failure("500", None, next + t, &rules);
        }
        assert_eq!(states[0].unhealthy_until, next + 2 + 300_000, "the first period again");
        // A provider that is not half-open has no trial to claim.
        assert!(!State::default().claim_trial(0, &rules));
    }

    #[test]
    fn an_operators_unhealthy_ends_in_a_trial_and_a_retry_after_pause_delays_it() {
        let mut s = State::default();
        s.mark(Status::Unhealthy, Some("maintenance".into()), Some(10_000), 0);
        assert!(!s.is_half_open(9_999) && s.is_half_open(10_000));
        assert!(s.claim_trial(10_000, &RULES) && !s.claim_trial(10_001, &RULES));
        let mut p = State::default();
        for t in 0..3 {
            p.record_failure("500", None, t, &RULES);
        }
        p.record_rate_limited(400_000, 3, &RULES);
        assert!(!p.is_half_open(300_003), "paused by Retry-After past the period");
        assert!(p.is_half_open(400_003));
    }

    #[test]
    fn unhealthy_periods_grow_by_the_backoff_up_to_the_cap() {
        let r = Rules { unhealthy_ms: 4_000, unhealthy_backoff: 3.0, max_unhealthy_ms: 50_000, ..RULES };
        assert_eq!([1, 2, 3, 4, 100].map(|e| r.unhealthy_period(e)), [4_000, 12_000, 36_000, 50_000, 50_000]);
        let flat = Rules { unhealthy_backoff: 1.0, ..r };
        assert_eq!(flat.unhealthy_period(9), 4_000);
        assert_eq!(Rules { max_unhealthy_ms: 1, ..r }.unhealthy_period(3), 4_000, "the cap is never below the first period");
    }

    #[test]
    fn failures_degrade_then_make_unhealthy_for_the_period_and_half_open_recovers() {
        let mut s = State::default();
        s.record_failure("500", Some(100.0), 1_000, &RULES);
        assert_eq!((s.status, s.consecutive_failures), (Status::Degraded, 1));
        s.record_failure("500", None, 2_000, &RULES);
        assert_eq!(s.status, Status::Degraded);
        s.record_failure("timeout", None, 3_000, &RULES);
        assert_eq!(s.status, Status::Unhealthy);
        assert!(!s.is_available(3_000 + 299_999));
        assert!(s.is_available(3_000 + 300_000), "half-open when the period ends");
        assert_eq!(s.status, Status::Unhealthy, "still classed unhealthy until a success");
        s.record_success(120.0, 400_000, &RULES);
        assert_eq!((s.status, s.consecutive_failures), (Status::Healthy, 0));
        assert!(s.is_healthy(400_000));
    }

    #[test]
    fn a_success_resets_the_count_and_slowness_degrades() {
        let mut s = State::default();
        s.record_failure("500", None, 0, &RULES);
        s.record_failure("500", None, 0, &RULES);
        s.record_success(100.0, 0, &RULES);
        s.record_failure("500", None, 0, &RULES);
        assert_eq!((s.status, s.consecutive_failures), (Status::Degraded, 1), "the count restarted");
        let mut slow = State::default();
        for _ in 0..5 {
            slow.record_success(5_000.0, 0, &RULES);
        }
        assert_eq!(slow.status, Status::Degraded);
        assert!(slow.is_available(0));
    }

    #[test]
    fn retry_after_pauses_a_provider() {
        let mut s = State::default();
        s.record_rate_limited(30_000, 1_000, &RULES);
        assert!(!s.is_available(30_999));
        assert!(s.is_available(31_000));
    }

    #[test]
    fn chains_order_healthy_then_degraded_then_unhealthy_keeping_config_order() {
        let mut states = vec![State::default(); 4];
        states[0].record_failure("x", None, 0, &RULES); // degraded
        for _ in 0..3 {
            states[1].record_failure("x", None, 0, &RULES); // unhealthy
        }
        let st = |i: usize| &states[i];
        assert_eq!(order(&[0, 1, 2, 3], st, Order::Config, 1), vec![2, 3, 0, 1]);
        let (tries, panic) = attempts(&[0, 1, 2, 3], st, Order::Config, 1);
        assert_eq!((tries, panic), (vec![2, 3, 0], false), "the unhealthy one is skipped while its period lasts");
        assert_eq!(pick_healthy(&[0, 1, 2, 3], st, 1), Some(2));
    }

    #[test]
    fn latency_order_sorts_inside_each_class() {
        let mut states = vec![State::default(); 3];
        states[0].record_success(900.0, 0, &RULES);
        states[1].record_success(100.0, 0, &RULES);
        states[2].record_success(500.0, 0, &RULES);
        let st = |i: usize| &states[i];
        assert_eq!(order(&[0, 1, 2], st, Order::Latency, 1), vec![1, 2, 0]);
        assert_eq!(order(&[0, 1, 2], st, Order::Config, 1), vec![0, 1, 2]);
    }

    /// The state machine of the table in docs/llm.md, step by step on one provider (primary) beside a
    /// healthy fallback.
    #[test]
    fn a_provider_degraded_by_failures_is_tried_again_in_its_place_after_degraded_ms() {
        let mut states = vec![State::default(); 2];
        // healthy --failure--> degraded (fallback first)
        states[0].record_failure("500", None, 1_000, &RULES);
        let order_at = |states: &Vec<State>, now| order(&[0, 1], |i| &states[i], Order::Config, now);
        assert_eq!(states[0].status, Status::Degraded);
        assert_eq!(order_at(&states, 1_000), vec![1, 0]);
        assert_eq!(order_at(&states, 30_999), vec![1, 0]);
        // degraded --degraded_ms without a failure--> tried first again (class healthy)
        assert_eq!(order_at(&states, 31_000), vec![0, 1]);
        assert_eq!(states[0].class(31_000), Status::Healthy);
        // tried again --failure--> degraded again, and the failure counts towards the threshold
        states[0].record_failure("500", None, 31_000, &RULES);
        assert_eq!((states[0].consecutive_failures, order_at(&states, 31_000)), (2, vec![1, 0]));
        states[0].record_failure("500", None, 61_000, &RULES);
        assert_eq!(states[0].status, Status::Unhealthy, "third failure in a row");
        assert_eq!(states[0].class(61_000 + 40_000), Status::Unhealthy, "unhealthy is not degraded: it waits out its period");
        // --success--> healthy (failures reset)
        states[0].record_success(50.0, 400_000, &RULES);
        assert_eq!((states[0].status, states[0].consecutive_failures, states[0].degraded_until), (Status::Healthy, 0, 0));
        // Degraded for slowness or by an operator: the class holds.
        let mut slow = State::default();
        slow.record_success(5_000.0, 0, &RULES);
        assert_eq!((slow.status, slow.class(10_000_000)), (Status::Degraded, Status::Degraded));
        let mut manual = State::default();
        manual.record_failure("500", None, 0, &RULES);
        manual.mark(Status::Degraded, Some("canary".into()), None, 1);
        assert_eq!(manual.class(10_000_000), Status::Degraded);
    }

    #[test]
    fn when_nothing_is_available_every_provider_is_tried_in_chain_order() {
        let mut states = vec![State::default(); 2];
        for s in states.iter_mut() {
            s.mark(Status::Unhealthy, Some("maintenance".into()), Some(60_000), 0);
        }
        let (tries, panic) = attempts(&[1, 0], |i| &states[i], Order::Config, 10);
        assert_eq!((tries, panic), (vec![1, 0], true));
    }
}
