//! Lowering of `providers`, `provider_chains` and `health`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw::{RawAuth, RawChain, RawHealth, RawProvider};
use super::{did_you_mean, problem, Problem};
use crate::providers::health::{Order, Rules};
use crate::providers::{Chain, HealthCheck, Provider, ProviderAuth};
use crate::secret::Secret;

pub(super) fn health(raw: &RawHealth, p: &mut Vec<Problem>) -> Rules {
    if raw.failure_threshold == 0 || raw.unhealthy_seconds == 0 || raw.degraded_seconds == 0 {
        problem(p, "health", "`failure_threshold`, `unhealthy_seconds` and `degraded_seconds` must be at least 1");
    }
    Rules {
        failure_threshold: raw.failure_threshold.max(1),
        unhealthy_ms: raw.unhealthy_seconds * 1000,
        degraded_latency_ms: raw.degraded_latency_ms,
        degraded_ms: raw.degraded_seconds.max(1) * 1000,
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
