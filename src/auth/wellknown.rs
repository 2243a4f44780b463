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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Origin;
    use crate::auth::tokens::{tests::settings, RingKey, TokenSettings};
    use jsonwebtoken::Algorithm;

    fn get(tokens: &TokenManager, path: &str) -> Reply {
        request(tokens, &Method::GET, path)
    }

    fn request(tokens: &TokenManager, method: &Method, path: &str) -> Reply {
        let req = ApiRequest {
            method,
            path,
            content_type: None,
            user_agent: "test",
            client_ip: "127.0.0.1",
            body: b"",
            origin: Origin::default(),
            identity: None,
        };
        handle(tokens, &req, "https://gw.example")
    }

    /// The discovery document names the configured issuer (else the gateway's own URL), the
    /// ring's signing algorithm and where its keys are.
    #[test]
    fn discovery_names_the_issuer_and_the_signing_algorithm() {
        let pem = crate::auth::keygen::generate_pem(Algorithm::ES256).unwrap();
        let key = RingKey::from_pem(Some("k1".into()), pem.expose(), Algorithm::ES256).unwrap();
        let es = TokenSettings { keys: vec![key], algorithm: Algorithm::ES256, ..settings() };
        let (status, doc) = get(&TokenManager::new(&es), "/.well-known/openid-configuration").unwrap();
        assert_eq!(status, 200);
        assert_eq!(doc["issuer"], "https://gw.example");
        assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["ES256"]));
        assert_eq!(doc["jwks_uri"], "https://gw.example/.well-known/jwks.json");
        let named = TokenManager::new(&TokenSettings { issuer: Some("https://id.example".into()), ..es });
        assert_eq!(get(&named, "/.well-known/openid-configuration").unwrap().1["issuer"], "https://id.example");
        let (_, jwks) = get(&named, "/.well-known/jwks.json").unwrap();
        assert_eq!(jwks["keys"][0]["kid"], "k1");
        assert_eq!(get(&named, "/.well-known/other").unwrap_err().status, 404);
        assert_eq!(request(&named, &Method::POST, "/.well-known/jwks.json").unwrap_err().status, 405);
    }
}
