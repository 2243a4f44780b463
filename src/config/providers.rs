//! Lowering of `providers`, `provider_chains` and `health`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw::{RawAuth, RawChain, RawHealth, RawLlmLimits, RawPrice, RawProvider, RawTokenLimits};
use super::{did_you_mean, problem, Problem};
use crate::llm::budget::{BudgetRules, TokenLimits};
use crate::llm::Api;
use crate::policy::Roles;
use crate::providers::health::{Order, Rules};
use crate::providers::models::ModelAccess;
use crate::providers::{Chain, HealthCheck, LlmSettings, Price, Provider, ProviderAuth};
use crate::secret::Secret;

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
