//! The access audit trail of the proxy: one `access` event per request the gateway judged
//! (granted, sampled by configuration; or denied, never sampled), and `auth.token_rejected` for
//! every token refusal. Built from ids, names and fixed reason words only: never a token.

use http::header::USER_AGENT;
use pingora::proxy::Session;
use serde_json::json;

use super::{Answer, Gateway, RequestCtx};
use crate::admission::Presenting;
use std::time::SystemTime;

use crate::audit::{self, AccessEvent, Event, Origin, Requirement};
use crate::policy::{Access, Credential};

/// What a route requires, as the access event names it (`Access::describe`, without building
/// a string).
fn requirement(a: &Access) -> Requirement<'_> {
    match a {
        Access::Public => Requirement::Word("public"),
        Access::Authenticated => Requirement::Word("authenticated"),
        Access::Role { role, .. } => Requirement::Pair("role", role),
        Access::Permission { resource, action, .. } => Requirement::Pair(resource, action),
    }
}

impl Gateway {
    /// `auth.token_rejected` (or `auth.api_key_denied` for a key), with the fixed reason word
    /// and, for a known key, its id only.
    pub(super) fn audit_token_rejected(&self, session: &Session, ctx: &RequestCtx, reason: &'static str) {
        let Some(audit) = &self.services.audit else { return };
        let ua = session.req_header().headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
        let origin = Origin { request_id: Some(&ctx.request_id), client_ip: ctx.client_text(), user_agent: ua };
        let user = ctx.identity.as_ref().map(|i| i.user_id.as_str());
        let event = match (ctx.presenting, ctx.identity.as_ref().and_then(|i| i.api_key_id())) {
            (Some(Presenting::ApiKey), key) => {
                Event::new("auth.api_key_denied", "denied", user, origin, json!({ "reason": reason, "api_key_id": key }))
            }
            _ => Event::new("auth.token_rejected", "denied", user, origin, json!({ "reason": reason })),
        };
        audit.emit(event);
    }

    /// One `access` event per request the gateway judged: who asked (user, role, session), for
    /// what (route, method, path, what the route requires), the decision and its reason.
    pub(super) fn audit_access(&self, session: &Session, ctx: &RequestCtx, status: u16) {
        let Some(audit) = &self.services.audit else { return };
        let (decision, reason) = match ctx.answer {
            // The endpoints audit their own events; a preflight is not an access decision.
            Answer::Endpoint | Answer::Preflight => return,
            Answer::Refused { reason, .. } => ("denied", reason),
            Answer::Forwarded => ("granted", ""),
        };
        // Built only when kept (granted events may be sampled), and borrowed from the request:
        // nothing is copied before it is written into its line.
        let event = || {
            let req = session.req_header();
            let route = ctx.snapshot.as_ref().zip(ctx.route).and_then(|(s, id)| s.policy.get(id));
            let user = ctx.identity.as_deref();
            let reason = match (reason, route) {
                ("", Some(r)) if r.access == Access::Public => "public_route",
                ("", _) => "authorized",
                (why, _) => why,
            };
            let (api_key_id, client_cert) = match user.map(|u| &u.credential) {
                Some(Credential::ApiKey { id }) => (Some(id.as_str()), None),
                Some(Credential::Certificate { subject }) => (None, Some(subject.as_str())),
                _ => (None, None),
            };
            let details = audit::Access {
                api_key_id,
                client_cert,
                method: req.method.as_str(),
                path: ctx.audit_path.as_deref(),
                reason,
                requirement: route.map(|r| requirement(&r.access)),
                role: user.and_then(|u| u.role.as_deref()),
                route: route.map(|r| r.name.as_str()),
                session_id: user.and_then(|u| u.session_id()),
                status,
            };
            let ua = req.headers.get(USER_AGENT).and_then(|v| v.to_str().ok());
            let origin = Origin { request_id: Some(&ctx.request_id), client_ip: ctx.client_text(), user_agent: ua };
            AccessEvent { at: SystemTime::now(), status: decision, user_id: user.map(|u| u.user_id.as_str()), origin, details }
        };
        if decision == "granted" {
            audit.emit_granted(event);
        } else {
            audit.emit(event());
        }
    }
}
