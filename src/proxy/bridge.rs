//! Serving the gateway's own endpoints (`/auth/*`, `/admin/users*`) from the proxy: read the
//! body (bounded), adapt the request, write the answer.

use pingora::proxy::Session;

use super::{headers, reply, Gateway, RequestCtx, Snapshot};
use crate::audit::Origin;
use crate::auth::api::{self, ApiContext, ApiRequest, ApiResponse, MAX_BODY_BYTES};

impl Gateway {
    /// Serves one of the gateway's own endpoints (login, sessions, user admin).
    pub(super) async fn serve_api(&self, session: &mut Session, ctx: &RequestCtx, snapshot: &Snapshot, path: &str) {
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(message) => {
                let answer = ApiResponse {
                    status: 400,
                    body: serde_json::json!({ "error": "invalid_request", "message": message }),
                    challenge: false,
                    headers: Vec::new(),
                };
                session.set_keepalive(None);
                reply::send_api(session, &answer, &ctx.request_id, &self.reply_headers(ctx, snapshot, &[])).await;
                return;
            }
        };
        let req = session.req_header();
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let client_ip = ctx.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let cx = ApiContext {
            tokens: &snapshot.tokens,
            roles: &snapshot.policy.roles,
            users: &snapshot.users,
            sessions: &self.services.sessions,
            passwords: &self.services.passwords,
            admin_role: &snapshot.admin_role,
            revocation_ttl: snapshot.tokens.access_ttl().as_secs() + snapshot.tokens.leeway_seconds(),
            metrics: self.services.metrics.as_deref(),
            limiter: &self.services.limiter,
            rate_limits: &snapshot.rate_limits,
            lockout: snapshot.lockout,
            audit: self.services.audit.as_ref(),
            tracker: Some(&self.services.tracker),
            providers: &snapshot.providers,
            chains: &snapshot.chains,
        };
        let user_agent = header("user-agent").unwrap_or("");
        let api_req = ApiRequest {
            method: &req.method,
            path,
            content_type: header("content-type"),
            user_agent,
            client_ip: &client_ip,
            authorization: headers::authorization(req),
            body: &body,
            origin: Origin { request_id: Some(&ctx.request_id), client_ip: Some(&client_ip), user_agent: Some(user_agent) },
        };
        let answer = api::handle(&cx, &api_req).await;
        let extra = self.reply_headers(ctx, snapshot, &answer.headers);
        reply::send_api(session, &answer, &ctx.request_id, &extra).await;
    }
}

/// Reads a request body of at most [`MAX_BODY_BYTES`].
async fn read_body(session: &mut Session) -> Result<Vec<u8>, String> {
    let too_large = || format!("the body is larger than {MAX_BODY_BYTES} bytes");
    let declared = session.req_header().headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
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
