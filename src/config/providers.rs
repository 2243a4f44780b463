//! Lowering of `providers`, `provider_chains` and `health`.

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

use std::time::Duration;

use super::defaults;
use super::upstreams::RawHealthCheck;
use super::{did_you_mean, problem, Problem};
use crate::llm::budget::{BudgetRules, TokenLimits};
use crate::llm::Api;
use crate::policy::Roles;
use crate::providers::health::{Order, Rules};
use crate::providers::models::ModelAccess;
use crate::providers::{Chain, HealthCheck, LlmSettings, Price, Provider, ProviderAuth};
use crate::secret::Secret;

/// How a provider's API key is sent: `bearer`, `none`, or `{ header: NAME }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawAuth {
    Kind(String),
    Header(RawAuthHeader),
}

/// `auth: { header: x-api-key }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuthHeader {
    pub header: String,
}

/// `providers.NAME:`: an LLM provider.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub url: String,
    /// The API it speaks: `openai` (default; OpenAI-compatible) or `anthropic` (Messages API:
    /// OpenAI chat requests are translated, its key goes in `x-api-key`).
    #[serde(default = "defaults::api")]
    pub api: String,
    /// The environment variable holding the API key (keys never live in the file).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub auth: Option<RawAuth>,
    #[serde(default)]
    pub health_check: Option<RawHealthCheck>,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Waiting for the response header (a timeout fails over).
    #[serde(default = "defaults::read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// Waiting for the response header, if other than `read_timeout_ms` (a timeout fails over).
    #[serde(default)]
    pub first_byte_timeout_ms: Option<u64>,
    /// Public model name -> this provider's name for it; a provider without it passes the
    /// client's model name through.
    #[serde(default)]
    pub models: Option<BTreeMap<String, String>>,
    /// The longest gap between two chunks of the response body (default `read_timeout_ms`);
    /// exceeded, the stream is ended and the provider recorded as failed.
    #[serde(default)]
    pub stream_idle_timeout_ms: Option<u64>,
    #[serde(default = "defaults::yes")]
    pub tls_verify: bool,
}

/// `llm_limits:`: token budgets per user, enforced before a request starts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLlmLimits {
    /// Every role's limits unless `roles` says otherwise.
    #[serde(default)]
    pub default: RawTokenLimits,
    /// Role -> limits overlaid on the default.
    #[serde(default)]
    pub roles: BTreeMap<String, RawTokenLimits>,
    /// Completion tokens reserved when a request names no `max_tokens`.
    #[serde(default = "defaults::reserve_tokens")]
    pub reserve_tokens: u64,
}

impl Default for RawLlmLimits {
    fn default() -> Self {
        RawLlmLimits { default: RawTokenLimits::default(), roles: BTreeMap::new(), reserve_tokens: defaults::reserve_tokens() }
    }
}

/// One role's token limits.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTokenLimits {
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    #[serde(default)]
    pub tokens_per_day: Option<u64>,
    /// No token limit at all.
    #[serde(default)]
    pub unlimited: bool,
}

/// `models_pricing.MODEL:`: what a model's tokens cost (for `portcullis_llm_cost_total`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub prompt_per_million: f64,
    pub completion_per_million: f64,
}

/// `provider_chains.NAME:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawChain {
    pub primary: String,
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// `config` (default) or `latency`: the order inside each health class.
    #[serde(default = "defaults::order")]
    pub order: String,
    /// Response statuses that fail over (before any byte reaches the client).
    #[serde(default = "defaults::failover_on")]
    pub failover_on: Vec<u16>,
    /// Request bodies up to this size are buffered so they can be resent; larger ones stream
    /// to one provider and are not retried.
    #[serde(default = "defaults::max_retry_body_bytes")]
    pub max_retry_body_bytes: usize,
}

/// `health:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawHealth {
    pub failure_threshold: u32,
    pub unhealthy_seconds: u64,
    pub degraded_latency_ms: u64,
    /// A provider degraded by failures is tried again in its place after this long without a
    /// new failure.
    pub degraded_seconds: u64,
    /// Trial requests (across every instance) a provider gets when its unhealthy period ends.
    pub half_open_trials: u32,
    /// A failed trial starts a period this many times longer than the one before...
    pub unhealthy_backoff: f64,
    /// ...up to this long.
    pub max_unhealthy_seconds: u64,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            failure_threshold: 3,
            unhealthy_seconds: 300,
            degraded_latency_ms: 2000,
            degraded_seconds: 30,
            half_open_trials: 1,
            unhealthy_backoff: 2.0,
            max_unhealthy_seconds: 3600,
        }
    }
}

pub(super) fn health(raw: &RawHealth, p: &mut Vec<Problem>) -> Rules {
    if raw.failure_threshold == 0 || raw.unhealthy_seconds == 0 || raw.degraded_seconds == 0 {
        problem(p, "health", "`failure_threshold`, `unhealthy_seconds` and `degraded_seconds` must be at least 1");
    }
    if raw.half_open_trials == 0 {
        problem(p, "health.half_open_trials", "must be at least 1 (a provider needs a trial to come back)");
    }
    if !raw.unhealthy_backoff.is_finite() || raw.unhealthy_backoff < 1.0 {
        problem(p, "health.unhealthy_backoff", "must be a number of at least 1 (1: every period as long as the first)");
    }
    if raw.max_unhealthy_seconds < raw.unhealthy_seconds {
        problem(p, "health.max_unhealthy_seconds", "must be at least `unhealthy_seconds`");
    }
    Rules {
        failure_threshold: raw.failure_threshold.max(1),
        unhealthy_ms: raw.unhealthy_seconds.saturating_mul(1000),
        degraded_latency_ms: raw.degraded_latency_ms,
        degraded_ms: raw.degraded_seconds.max(1).saturating_mul(1000),
        half_open_trials: raw.half_open_trials.max(1),
        unhealthy_backoff: if raw.unhealthy_backoff.is_finite() { raw.unhealthy_backoff.max(1.0) } else { 1.0 },
        max_unhealthy_ms: raw.max_unhealthy_seconds.saturating_mul(1000),
    }
}

pub(super) fn providers(
    raw: &BTreeMap<String, RawProvider>,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Vec<Problem>,
) -> Vec<Option<Provider>> {
    raw.iter().map(|(name, r)| provider(name, r, env, p)).collect()
}

fn provider(name: &str, r: &RawProvider, env: &dyn Fn(&str) -> Option<String>, p: &mut Vec<Problem>) -> Option<Provider> {
    let at = |k: &str| format!("providers.{name}.{k}");
    let target = super::upstreams::parse_url(&r.url, &at("url"), p)?;
    let api = match r.api.as_str() {
        "openai" => Api::OpenAi,
        "anthropic" => Api::Anthropic,
        other => {
            problem(p, &at("api"), format!("unknown API `{other}`: use `openai` or `anthropic`"));
            return None;
        }
    };
    let wants_key = !matches!(&r.auth, Some(RawAuth::Kind(k)) if k == "none") && (r.auth.is_some() || r.api_key_env.is_some());
    let key = if wants_key {
        match &r.api_key_env {
            None => {
                problem(p, &format!("providers.{name}"), "an authenticated provider needs `api_key_env` (or `auth: none`)");
                return None;
            }
            Some(var) => match env(var) {
                Some(k) if !k.trim().is_empty() => Some(Secret::new(k.trim().as_bytes().to_vec())),
                _ => {
                    problem(p, &at("api_key_env"), format!("environment variable `{var}` is not set: it must hold the provider's API key"));
                    return None;
                }
            },
        }
    } else {
        None
    };
    let auth = match (&r.auth, key) {
        (Some(RawAuth::Kind(k)), _) if k == "none" => ProviderAuth::None,
        (Some(RawAuth::Kind(k)), Some(key)) if k == "bearer" => ProviderAuth::Bearer(key),
        // Anthropic takes its key in `x-api-key`.
        (None, Some(key)) if api == Api::Anthropic => ProviderAuth::Header("x-api-key".into(), key),
        (None, Some(key)) => ProviderAuth::Bearer(key),
        (None, None) => ProviderAuth::None,
        (Some(RawAuth::Header(h)), Some(key)) => match http::HeaderName::from_bytes(h.header.as_bytes()) {
            Ok(n) => ProviderAuth::Header(n.as_str().to_string(), key),
            Err(_) => {
                problem(p, &at("auth.header"), "not a valid header name");
                return None;
            }
        },
        (Some(RawAuth::Kind(other)), _) => {
            problem(p, &at("auth"), format!("unknown auth `{other}`: use `bearer`, `none` or `{{ header: NAME }}`"));
            return None;
        }
        (Some(RawAuth::Header(_)), None) => return None,
    };
    let health_check = match &r.health_check {
        None => None,
        Some(h) => {
            if h.interval_seconds == 0 || h.timeout_ms == 0 || !h.path.starts_with('/') {
                problem(p, &at("health_check"), "`path` must start with '/', `interval_seconds` and `timeout_ms` must be greater than 0");
                return None;
            }
            let Ok(method) = http::Method::from_bytes(h.method.to_ascii_uppercase().as_bytes()) else {
                problem(p, &at("health_check.method"), "not an HTTP method");
                return None;
            };
            Some(HealthCheck {
                path: h.path.clone(),
                method,
                interval: Duration::from_secs(h.interval_seconds),
                timeout: Duration::from_millis(h.timeout_ms),
            })
        }
    };
    Some(Provider {
        name: name.to_string(),
        api,
        address: target.address,
        tls: target.tls,
        host_header: target.host_header,
        sni: target.host,
        verify_cert: r.tls_verify,
        connect_timeout: Duration::from_millis(r.connect_timeout_ms.max(1)),
        read_timeout: Duration::from_millis(r.read_timeout_ms.max(1)),
        first_byte_timeout: Duration::from_millis(r.first_byte_timeout_ms.unwrap_or(r.read_timeout_ms).max(1)),
        stream_idle_timeout: Duration::from_millis(r.stream_idle_timeout_ms.unwrap_or(r.read_timeout_ms).max(1)),
        auth,
        health_check,
        models: r.models.clone(),
    })
}

pub(super) fn chains(raw: &BTreeMap<String, RawChain>, provider_names: &[&str], p: &mut Vec<Problem>) -> Vec<Chain> {
    let mut out = Vec::new();
    for (name, c) in raw {
        let at = |k: &str| format!("provider_chains.{name}.{k}");
        let mut providers = Vec::new();
        let members = std::iter::once((at("primary"), &c.primary))
            .chain(c.fallbacks.iter().enumerate().map(|(i, f)| (format!("{}[{i}]", at("fallbacks")), f)));
        for (path, member) in members {
            match provider_names.iter().position(|n| n == member) {
                Some(i) if providers.contains(&i) => problem(p, &path, format!("provider `{member}` appears twice in the chain")),
                Some(i) => providers.push(i),
                None => problem(p, &path, format!("unknown provider `{member}`{}", did_you_mean(member, provider_names.iter().copied()))),
            }
        }
        let order = match c.order.as_str() {
            "config" => Order::Config,
            "latency" => Order::Latency,
            other => {
                problem(p, &at("order"), format!("unknown order `{other}`: use `config` or `latency`"));
                Order::Config
            }
        };
        for (i, s) in c.failover_on.iter().enumerate() {
            if !(400..=599).contains(s) {
                problem(p, &format!("{}[{i}]", at("failover_on")), "a status to fail over on is 400 to 599");
            }
        }
        out.push(Chain {
            name: name.clone(),
            providers,
            order,
            failover_on: c.failover_on.clone(),
            max_retry_body_bytes: c.max_retry_body_bytes,
        });
    }
    out
}

/// `llm_limits` and `models_pricing`, with the model access `permissions.models` gave; the
/// model names metrics may carry are every name the config mentions.
pub(super) fn llm(
    limits: Option<&RawLlmLimits>,
    pricing: &BTreeMap<String, RawPrice>,
    roles: &Roles,
    model_access: Option<ModelAccess>,
    providers: &[Option<Provider>],
    p: &mut Vec<Problem>,
) -> LlmSettings {
    let budgets = limits.map(|l| {
        let default = token_limits(&l.default, "llm_limits.default", p);
        let mut by_role = std::collections::HashMap::new();
        for (role, r) in &l.roles {
            if roles.level(role).is_none() {
                problem(p, &format!("llm_limits.roles.{role}"), format!("unknown role `{role}`{}", did_you_mean(role, roles.names())));
            }
            by_role.insert(role.clone(), default.overlaid(token_limits(r, &format!("llm_limits.roles.{role}"), p)));
        }
        if l.reserve_tokens == 0 {
            problem(p, "llm_limits.reserve_tokens", "must be at least 1");
        }
        BudgetRules { default, roles: by_role, reserve_tokens: l.reserve_tokens.max(1) }
    });
    let mut prices = std::collections::HashMap::new();
    for (model, price) in pricing {
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        if !ok(price.prompt_per_million) || !ok(price.completion_per_million) {
            problem(p, &format!("models_pricing.{model}"), "prices must be numbers of at least 0");
            continue;
        }
        prices.insert(
            model.clone(),
            Price { prompt_per_million: price.prompt_per_million, completion_per_million: price.completion_per_million },
        );
    }
    let mut known_models: std::collections::BTreeSet<String> = prices.keys().cloned().collect();
    known_models.extend(providers.iter().flatten().filter_map(|p| p.models.as_ref()).flat_map(|m| m.keys().cloned()));
    if let Some(a) = &model_access {
        known_models.extend(a.models().filter(|m| *m != "*").map(str::to_string));
    }
    LlmSettings { model_access, budgets, prices, known_models }
}

fn token_limits(r: &RawTokenLimits, at: &str, p: &mut Vec<Problem>) -> TokenLimits {
    if r.tokens_per_minute == Some(0) || r.tokens_per_day == Some(0) {
        problem(p, at, "`tokens_per_minute` and `tokens_per_day` must be at least 1 (leave one out for no limit)");
    }
    TokenLimits { per_minute: r.tokens_per_minute, per_day: r.tokens_per_day, unlimited: r.unlimited }
}
