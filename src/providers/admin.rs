//! The `/admin/providers` endpoints: every provider's shared health and each chain's current
//! order, and an operator's override of a provider's status. Admission has already required
//! the admin role.

use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::health::{self, Status};
use super::tracker::{override_change, Tracker};
use super::{Chain, Provider};
use crate::api::{json_body, only, ApiError, ApiRequest, Reply};
use crate::audit::{Audit, Event};
use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::timefmt::rfc3339;

/// What the provider endpoints need.
pub struct ProvidersContext<'a> {
    pub tracker: &'a Tracker,
    pub providers: &'a [Provider],
    pub chains: &'a [Chain],
    pub audit: Option<&'a Audit>,
    pub metrics: Option<&'a Metrics>,
}

/// Serves one `/admin/providers` request.
pub async fn handle(cx: &ProvidersContext<'_>, req: &ApiRequest<'_>) -> Reply {
    match req.segments().as_slice() {
        ["admin", "providers"] => only(req.method, Method::GET, || list_providers(cx)).await,
        ["admin", "providers", name, "status"] if !name.is_empty() => {
            only(req.method, Method::POST, || override_provider(cx, req, name)).await
        }
        _ => Err(ApiError::not_found()),
    }
}

/// A store failure seen here: counted once, as `api`.
fn store_failed(cx: &ProvidersContext<'_>, e: StoreError) -> ApiError {
    if let Some(m) = cx.metrics {
        m.ops.store_error("api");
    }
    e.into()
}

fn emit(cx: &ProvidersContext<'_>, req: &ApiRequest<'_>, kind: &'static str, status: &'static str, user: Option<&str>, details: Value) {
    if let Some(a) = cx.audit {
        a.emit(Event::new(kind, status, user, req.origin, details));
    }
}

fn provider_json(name: &str, s: &health::State, now: u64) -> Value {
    json!({
        "name": name,
        "status": s.status.as_str(),
        "available": s.is_available(now),
        "last_check": (s.last_check > 0).then(|| rfc3339(s.last_check / 1000)),
        "response_time_ms": s.response_time_ms.map(|v| (v * 10.0).round() / 10.0),
        "consecutive_failures": s.consecutive_failures,
        "half_open": s.is_half_open(now),
        "unhealthy_periods": s.ejections,
        "reason": s.reason,
        "unavailable_until": (!s.is_available(now)).then(|| rfc3339(s.unhealthy_until.max(s.retry_after_until).min(u64::MAX / 2) / 1000)),
    })
}

async fn list_providers(cx: &ProvidersContext<'_>) -> Reply {
    let tracker = cx.tracker;
    let now = now_ms();
    let states = tracker.snapshot();
    let default = health::State::default();
    let state = |name: &str| states.get(name).unwrap_or(&default);
    let providers: Vec<Value> = cx.providers.iter().map(|p| provider_json(&p.name, state(&p.name), now)).collect();
    let chains: Vec<Value> = cx
        .chains
        .iter()
        .map(|c| {
            let st = |i: usize| state(&cx.providers[i].name);
            let (order, panic) = health::attempts(&c.providers, st, c.order, now);
            json!({
                "name": c.name,
                "providers": c.providers.iter().map(|i| cx.providers[*i].name.as_str()).collect::<Vec<_>>(),
                "current_order": order.iter().map(|i| cx.providers[*i].name.as_str()).collect::<Vec<_>>(),
                "panic_mode": panic,
            })
        })
        .collect();
    Ok((200, json!({ "providers": providers, "chains": chains })))
}

#[derive(Deserialize)]
struct StatusOverride {
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    duration_seconds: Option<u64>,
}

async fn override_provider(cx: &ProvidersContext<'_>, req: &ApiRequest<'_>, name: &str) -> Reply {
    let by = req.caller()?;
    let tracker = cx.tracker;
    if !cx.providers.iter().any(|p| p.name == name) {
        return Err(ApiError::new(404, "not_found", "no such provider"));
    }
    let body: StatusOverride = json_body(req)?;
    let Some(status) = Status::parse(&body.status) else {
        return Err(ApiError::bad_request("`status` must be healthy, degraded or unhealthy"));
    };
    let reason = body.reason.map(|r| r.chars().take(200).collect::<String>()).or_else(|| Some("manual override".into()));
    let duration = body.duration_seconds.map(std::time::Duration::from_secs);
    let state = tracker.update(name, override_change(status, reason.clone(), duration)).await.map_err(|e| store_failed(cx, e))?;
    tracing::info!(by = %by.user_id, provider = %name, status = %status.as_str(), "provider status override");
    emit(
        cx,
        req,
        "admin.provider_override",
        "success",
        Some(&by.user_id),
        json!({ "provider": name, "status": status.as_str(), "reason": reason, "duration_seconds": body.duration_seconds }),
    );
    Ok((200, provider_json(name, &state, now_ms())))
}
