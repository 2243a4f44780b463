//! API rate limits on the proxied path (local windows, no store round trip) and the access
//! audit trail.

use pingora::proxy::Session;
use serde_json::json;

use super::{Gateway, RequestCtx, Snapshot};
use crate::admission::{Identity, Reject};
use crate::audit::{Details, Event, Granted, Origin};
use crate::clientip::ip_text;
use crate::policy::Route;
use crate::ratelimit::{self, Limit};

impl Gateway {
    /// Applies the API limits to an admitted request: per user (or per IP when public), then the
    /// route's own limit. Allowed requests get RateLimit headers on their response.
    pub(super) fn limit_admitted(
        &self,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
        route: &Route,
        identity: Option<&Identity>,
    ) -> Result<(), Reject> {
        let subject = match (identity, ctx.client_ip) {
            (Some(id), _) => ["u:", &id.user_id].concat(),
            (None, Some(ip)) => ["ip:", &ip_text(ip)].concat(),
            (None, None) => return Ok(()),
        };
        let general = match identity {
            Some(_) => snapshot.rate_limits.api_user.map(|l| ("api_user", l)),
            None => snapshot.rate_limits.api_ip.map(|l| ("api_ip", l)),
        };
        if let Some((name, limit)) = general {
            self.check_limit(ctx, name, &[name, ":", &subject].concat(), limit)?;
        }
        if let Some((name, limit)) = &route.rate_limit {
            self.check_limit(ctx, name, &["route:", name, ":", &subject].concat(), *limit)?;
        }
        Ok(())
    }

    /// Counts a request that failed authentication against the per-IP limit.
    pub(super) fn limit_unauthenticated(&self, ctx: &mut RequestCtx, snapshot: &Snapshot) -> Result<(), Reject> {
        match (snapshot.rate_limits.api_ip, ctx.client_ip) {
            (Some(limit), Some(ip)) => self.check_limit(ctx, "api_ip", &["api_ip:ip:", &ip_text(ip)].concat(), limit),
            _ => Ok(()),
        }
    }

    fn check_limit(&self, ctx: &mut RequestCtx, name: &str, key: &str, limit: Limit) -> Result<(), Reject> {
        let d = self.services.limiter.api(key, limit);
        let headers = ratelimit::headers(name, limit, &d);
        if d.allowed {
            ctx.limit_headers = headers.into();
            return Ok(());
        }
        if let Some(m) = &self.services.metrics {
            m.rate_limited(name);
        }
        if let Some(a) = &self.services.audit {
            let ip = ctx.client_ip.map(ip_text);
            let origin = Origin { request_id: Some(&ctx.request_id), client_ip: ip.as_deref(), user_agent: None };
            a.emit(Event::new("ratelimit.hit", "denied", None, origin, json!({ "limit": name, "retry_after": d.retry_after_seconds })));
        }
        let mut reject = Reject::new(429, "rate_limited", "too many requests; retry later", "rate_limited");
        reject.headers = headers.to_vec();
        reject.headers.push(("retry-after", d.retry_after_seconds.to_string()));
        Err(reject)
    }

    /// `auth.token_rejected`, with the fixed reason word only.
    pub(super) fn audit_token_rejected(&self, session: &Session, ctx: &RequestCtx, reason: &'static str) {
        let Some(audit) = &self.services.audit else { return };
        let ip = ctx.client_ip.map(ip_text);
        let ua = session.req_header().headers.get("user-agent").and_then(|v| v.to_str().ok());
        let origin = Origin { request_id: Some(&ctx.request_id), client_ip: ip.as_deref(), user_agent: ua };
        audit.emit(Event::new("auth.token_rejected", "denied", None, origin, json!({ "reason": reason })));
    }

    /// One `access` event per proxied request: granted (sampled by configuration) or refused.
    pub(super) fn audit_access(&self, session: &Session, ctx: &mut RequestCtx, status: u16) {
        let Some(audit) = &self.services.audit else { return };
        if ctx.api {
            return; // the endpoints audit their own events
        }
        let path = ctx.audit_path.take();
        let ctx = &*ctx;
        // Built only when kept: granted events may be sampled.
        let event = |status_word: &'static str, user: Option<&str>, details: Details| {
            let req = session.req_header();
            let ip = ctx.client_ip.map(ip_text);
            let ua = req.headers.get("user-agent").and_then(|v| v.to_str().ok());
            let origin = Origin { request_id: Some(&ctx.request_id), client_ip: ip.as_deref(), user_agent: ua };
            Event::new("access", status_word, user, origin, details)
        };
        let method = &session.req_header().method;
        match &ctx.refusal {
            None => audit.emit_granted(|| {
                let user = ctx.identity.as_ref();
                let route = ctx.snapshot.as_ref().zip(ctx.route).and_then(|(s, i)| s.policy.routes.get(i));
                let details = Granted {
                    method: method.clone(),
                    path,
                    requirement: route.map(|r| r.access.describe()),
                    role: user.and_then(|u| u.role.clone()),
                    route: route.map(|r| r.name.clone()),
                    status,
                };
                event("granted", user.map(|u| u.user_id.as_str()), Details::Granted(Box::new(details)))
            }),
            Some((refused_status, reason, route)) => {
                let details = json!({
                    "route": route,
                    "method": method.as_str(),
                    "status": refused_status,
                    "reason": reason,
                });
                audit.emit(event("denied", None, details.into()));
            }
        }
    }
}
