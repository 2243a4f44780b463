//! LLM providers: health, failovers, calls, tokens, cost and budgets.

use prometheus::{CounterVec, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec};

use super::families::Families;

const STATUSES: [&str; 3] = ["healthy", "degraded", "unhealthy"];

pub struct LlmMetrics {
    provider_health: IntGaugeVec,
    provider_failures: IntGaugeVec,
    failovers: IntCounterVec,
    chain_panics: IntCounterVec,
    tokens: IntCounterVec,
    requests: IntCounterVec,
    ttft: HistogramVec,
    budget_rejections: IntCounter,
    cost: CounterVec,
}

impl LlmMetrics {
    pub fn new(f: &Families) -> Self {
        LlmMetrics {
            provider_health: f.gauge_vec(
                "provider_health",
                "1 for the provider's current status, 0 for the others.",
                &["provider", "status"],
            ),
            provider_failures: f.gauge_vec("provider_consecutive_failures", "Consecutive failures of a provider.", &["provider"]),
            failovers: f.counter_vec(
                "failovers_total",
                "Requests passed from one provider to the next, by chain.",
                &["chain", "from", "to"],
            ),
            chain_panics: f.counter_vec(
                "chain_panics_total",
                "Requests on a chain whose every provider was unhealthy (all tried in chain order anyway).",
                &["chain"],
            ),
            tokens: f.counter_vec(
                "llm_tokens_total",
                "LLM tokens used, by provider, public model (`other` for names the config does not mention) and kind (prompt, completion).",
                &["provider", "model", "kind"],
            ),
            requests: f.counter_vec(
                "llm_requests_total",
                "LLM calls by provider, public model and outcome (ok, error, failover, broken, cut_off, client_closed, invalid_request).",
                &["provider", "model", "outcome"],
            ),
            ttft: f.histogram_vec(
                "llm_time_to_first_token_seconds",
                "Time from forwarding an LLM call to the first byte of its answer's body.",
                &["provider"],
                &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0],
            ),
            budget_rejections: f.counter("llm_budget_rejections_total", "LLM calls refused before forwarding: over a token budget."),
            cost: f.float_counter_vec("llm_cost_total", "What LLM tokens cost at `models_pricing`, by public model.", &["model"]),
        }
    }

    /// Declares a configured provider: its health and failure series exist (at 0) before its
    /// first health signal.
    pub fn provider_known(&self, provider: &str) {
        for s in STATUSES {
            self.provider_health.with_label_values(&[provider, s]);
        }
        self.provider_failures.with_label_values(&[provider]);
    }

    /// Sets a provider's health gauges.
    pub fn provider_state(&self, provider: &str, status: &str, consecutive_failures: u32) {
        for s in STATUSES {
            self.provider_health.with_label_values(&[provider, s]).set(i64::from(s == status));
        }
        self.provider_failures.with_label_values(&[provider]).set(i64::from(consecutive_failures));
    }

    /// Counts a failover from one provider to the next.
    pub fn failover(&self, chain: &str, from: &str, to: &str) {
        self.failovers.with_label_values(&[chain, from, to]).inc();
    }

    /// Counts a chain request in panic mode.
    pub fn chain_panic(&self, chain: &str) {
        self.chain_panics.with_label_values(&[chain]).inc();
    }

    /// Counts one LLM call's outcome and tokens (and their cost, if priced).
    pub fn call(&self, provider: &str, model: &str, outcome: &str, prompt: u64, completion: u64, cost: Option<f64>) {
        self.requests.with_label_values(&[provider, model, outcome]).inc();
        if prompt + completion > 0 {
            self.tokens.with_label_values(&[provider, model, "prompt"]).inc_by(prompt);
            self.tokens.with_label_values(&[provider, model, "completion"]).inc_by(completion);
        }
        if let Some(c) = cost {
            self.cost.with_label_values(&[model]).inc_by(c);
        }
    }

    /// Observes the time to an LLM answer's first body byte.
    pub fn first_token(&self, provider: &str, seconds: f64) {
        self.ttft.with_label_values(&[provider]).observe(seconds);
    }

    /// Counts a call refused for its token budget.
    pub fn budget_rejected(&self) {
        self.budget_rejections.inc();
    }
}
