//! CORS: which cross-origin browser requests are allowed, and the headers that say so.
//! Preflights are answered by the gateway itself. Pure.

/// `cors:` in gateway.yaml, validated (a wildcard origin never goes with credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Exact origins, or `["*"]`.
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    /// Lower-case header names.
    pub headers: Vec<String>,
    pub credentials: bool,
    pub max_age_seconds: u64,
}

/// What to do with a request that may be a preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// Not a preflight: proxy or refuse as usual.
    No,
    /// Answer 204 with these headers.
    Allowed(Vec<(&'static str, String)>),
    /// Answer 403: the origin, method or a header is not allowed.
    Denied,
}

impl CorsPolicy {
    fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    fn allow_origin_value(&self, origin: &str) -> String {
        if self.origins.iter().any(|o| o == "*") && !self.credentials {
            "*".into()
        } else {
            origin.to_string()
        }
    }

    /// Classifies an `OPTIONS` request carrying `Origin` and `Access-Control-Request-*`.
    pub fn preflight(&self, method: &str, origin: Option<&str>, request_method: Option<&str>, request_headers: Option<&str>) -> Preflight {
        let (Some(origin), Some(request_method), true) = (origin, request_method, method.eq_ignore_ascii_case("OPTIONS")) else {
            return Preflight::No;
        };
        let method_ok = self.methods.iter().any(|m| m.eq_ignore_ascii_case(request_method.trim()));
        let headers_ok = request_headers
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .all(|h| self.headers.contains(&h));
        if !self.origin_allowed(origin) || !method_ok || !headers_ok {
            return Preflight::Denied;
        }
        let mut headers = vec![
            ("access-control-allow-origin", self.allow_origin_value(origin)),
            ("access-control-allow-methods", self.methods.join(", ")),
            ("access-control-allow-headers", self.headers.join(", ")),
            ("access-control-max-age", self.max_age_seconds.to_string()),
            ("vary", "Origin".into()),
        ];
        if self.credentials {
            headers.push(("access-control-allow-credentials", "true".into()));
        }
        Preflight::Allowed(headers)
    }

    /// Headers for an actual (non-preflight) cross-origin response.
    pub fn response_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        match origin {
            Some(o) if self.origin_allowed(o) => {
                let mut h = vec![("access-control-allow-origin", self.allow_origin_value(o)), ("vary", "Origin".into())];
                if self.credentials {
                    h.push(("access-control-allow-credentials", "true".into()));
                }
                h
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(credentials: bool) -> CorsPolicy {
        CorsPolicy {
            origins: vec!["https://app.example.com".into()],
            methods: vec!["GET".into(), "POST".into()],
            headers: vec!["authorization".into(), "content-type".into()],
            credentials,
            max_age_seconds: 600,
        }
    }

    #[test]
    fn preflights_are_answered_for_allowed_origins_methods_and_headers() {
        let p = policy(true);
        let got = p.preflight("OPTIONS", Some("https://app.example.com"), Some("POST"), Some("Authorization, Content-Type"));
        let Preflight::Allowed(h) = got else { panic!("{got:?}") };
        assert!(h.contains(&("access-control-allow-origin", "https://app.example.com".into())));
        assert!(h.contains(&("access-control-allow-credentials", "true".into())));
        assert_eq!(p.preflight("OPTIONS", Some("https://evil.example"), Some("POST"), None), Preflight::Denied);
        assert_eq!(p.preflight("OPTIONS", Some("https://app.example.com"), Some("DELETE"), None), Preflight::Denied);
        assert_eq!(p.preflight("OPTIONS", Some("https://app.example.com"), Some("GET"), Some("x-secret")), Preflight::Denied);
        assert_eq!(p.preflight("OPTIONS", None, Some("GET"), None), Preflight::No);
        assert_eq!(p.preflight("GET", Some("https://app.example.com"), Some("GET"), None), Preflight::No);
    }

    #[test]
    fn responses_echo_only_allowed_origins() {
        let p = policy(false);
        assert_eq!(p.response_headers(Some("https://evil.example")), vec![]);
        assert_eq!(p.response_headers(Some("https://app.example.com"))[0].1, "https://app.example.com");
        let any = CorsPolicy { origins: vec!["*".into()], ..policy(false) };
        assert_eq!(any.response_headers(Some("https://x.example"))[0].1, "*");
    }
}
