//! Serving the gateway's own endpoints (`/auth/*`, `/admin/users*`, `/admin/providers*`) once
//! admission has let a request through: read the body (bounded), adapt the request, hand it to
//! the endpoint family, write the answer through the one reply adapter.

use pingora::proxy::Session;

use super::{headers, reply, Gateway, RequestCtx};
use crate::api::{self, ApiError, ApiRequest, ApiResponse, MAX_BODY_BYTES};
use crate::audit::Origin;
use crate::auth::api::ApiContext;
use crate::policy::Endpoint;
use crate::providers::admin::ProvidersContext;

impl Gateway {
    /// Serves one admitted request to the gateway's endpoints at `path` (normalized).
    pub(super) async fn serve_endpoint(&self, session: &mut Session, ctx: &RequestCtx, endpoint: Endpoint, path: &str) {
        let Some(snapshot) = ctx.snapshot.clone() else { return };
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(message) => {
                let mut answer = reply::Reply::from(api::answer(Err(ApiError::bad_request(message))));
                answer.close = true; // the rest of the body was never read
                reply::send(session, ctx, answer).await;
                return;
            }
        };
        let req = session.req_header();
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let client_ip = ctx.client_text().unwrap_or_default().to_string();
        let user_agent = header("user-agent").unwrap_or("");
        let api_req = ApiRequest {
            method: &req.method,
            path,
            content_type: header("content-type"),
            user_agent,
            client_ip: &client_ip,
            body: &body,
            origin: Origin { request_id: Some(&ctx.request_id), client_ip: Some(&client_ip), user_agent: Some(user_agent) },
            identity: ctx.identity.as_deref(),
        };
        let s = &self.services;
        let result = match endpoint {
            Endpoint::Auth | Endpoint::Users | Endpoint::ApiKeys | Endpoint::Revocations => {
                let cx = ApiContext {
                    tokens: &snapshot.tokens,
                    roles: &snapshot.policy.roles,
                    users: &snapshot.users,
                    user_store: s.users.as_ref(),
                    sessions: &s.sessions,
                    passwords: &s.passwords,
                    revocation_ttl: snapshot.tokens.access_ttl().as_secs() + snapshot.tokens.leeway_seconds(),
                    metrics: s.metrics.as_deref(),
                    limiter: &s.limiter,
                    rate_limits: &snapshot.guards.rate_limits,
                    lockout: snapshot.guards.lockout,
                    audit: s.audit.as_ref(),
                    credentials: &s.credentials,
                    api_keys: snapshot.api_keys.as_ref(),
                    limit_names: snapshot.limit_policies.named.keys().map(String::as_str).collect(),
                    identity_providers: &snapshot.identity_providers,
                };
                match endpoint {
                    Endpoint::Auth => crate::auth::api::handle(&cx, &api_req).await,
                    Endpoint::ApiKeys => crate::auth::keys_api::handle(&cx, &api_req).await,
                    Endpoint::Revocations => crate::auth::revocations::handle(&cx, &api_req).await,
                    _ => crate::auth::admin::handle(&cx, &api_req).await,
                }
            }
            Endpoint::WellKnown => {
                let host = header("host").filter(|h| h.bytes().all(|b| b.is_ascii_graphic())).unwrap_or("localhost");
                let base = format!("{}://{host}", if ctx.tls { "https" } else { "http" });
                crate::auth::wellknown::handle(&snapshot.tokens, &api_req, &base)
            }
            Endpoint::Usage => self.usage(&snapshot, &api_req).await,
            Endpoint::Providers => {
                let cx = ProvidersContext {
                    tracker: &s.tracker,
                    providers: &snapshot.providers.providers,
                    chains: &snapshot.providers.chains,
                    audit: s.audit.as_ref(),
                    metrics: s.metrics.as_deref(),
                };
                crate::providers::admin::handle(&cx, &api_req).await
            }
        };
        let answer: ApiResponse = api::answer(result);
        reply::send(session, ctx, answer.into()).await;
    }
}

impl Gateway {
    /// `GET /auth/usage`: the caller's LLM tokens in each window, by model.
    async fn usage(&self, snapshot: &super::Snapshot, req: &ApiRequest<'_>) -> api::Reply {
        if req.method != http::Method::GET {
            return Err(ApiError::method_not_allowed("GET"));
        }
        let identity = req.caller()?;
        let Some(rules) = &snapshot.providers.llm.budgets else {
            return Ok((
                200,
                serde_json::json!({ "user_id": identity.user_id, "windows": [], "note": "token use is not counted: `llm_limits` is not configured" }),
            ));
        };
        let now = crate::clock::unix_now();
        match self.services.budgets.report(rules, &identity.user_id, identity.role.as_deref(), now).await {
            Ok(report) => Ok((200, report)),
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads a request body of at most [`MAX_BODY_BYTES`].
async fn read_body(session: &mut Session) -> Result<Vec<u8>, String> {
    let too_large = || format!("the body is larger than {MAX_BODY_BYTES} bytes");
    let declared = headers::content_length(session.req_header());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err("the body could not be read".into()),
        }
    }
}
