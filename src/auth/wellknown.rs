//! `/.well-known/jwks.json` (the public keys of the gateway's token ring, so upstream services
//! can verify its tokens and identity assertions themselves) and
//! `/.well-known/openid-configuration` (an OpenID-style discovery document naming it).

use http::Method;
use serde_json::json;

use super::tokens::TokenManager;
use crate::api::{ApiError, ApiRequest, Reply};

/// Serves one `/.well-known/*` request; `base` is the gateway's own URL (`https://host`), used
/// when `tokens.issuer` is not set.
pub fn handle(tokens: &TokenManager, req: &ApiRequest<'_>, base: &str) -> Reply {
    if *req.method != Method::GET && *req.method != Method::HEAD {
        return Err(ApiError::method_not_allowed("GET"));
    }
    match req.path {
        "/.well-known/jwks.json" => Ok((200, tokens.jwks())),
        "/.well-known/openid-configuration" => {
            let issuer = tokens.issuer().unwrap_or(base);
            let alg = format!("{:?}", tokens.algorithm());
            Ok((
                200,
                json!({
                    "issuer": issuer,
                    "jwks_uri": format!("{base}/.well-known/jwks.json"),
                    "id_token_signing_alg_values_supported": [alg],
                    "token_endpoint": format!("{base}/auth/login"),
                    "response_types_supported": ["token"],
                    "subject_types_supported": ["public"],
                }),
            ))
        }
        _ => Err(ApiError::not_found()),
    }
}
