//! Whether a cookie-borne request comes from our own pages (cross-site request forgery
//! defence), by the algorithm of Go 1.25's `http.CrossOriginProtection`: safe methods pass; else
//! the browser's `Sec-Fetch-Site` decides (`same-origin` and `none` pass); a browser that sends
//! no Fetch Metadata is judged by `Origin` (our `public_url`, or one the operator trusts); a
//! request with neither header is not from a web page (browsers send one of them on every
//! unsafe request) and passes. Only requests authenticated by the cookie are checked: a
//! bearer token, API key or client certificate is not sent by the browser on its own.

/// The origins a cookie-borne request may come from.
#[derive(Debug, Clone)]
pub struct Origins {
    /// `browser.public_url`'s origin, serialized as browsers send `Origin`.
    public: String,
    /// `browser.trusted_origins`, serialized the same way.
    trusted: Vec<String>,
}

/// Why a request was refused (`403 csrf_rejected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `Sec-Fetch-Site` says another site (or a sibling of ours) sent it.
    CrossSite,
    /// No Fetch Metadata, and an `Origin` that is neither ours nor trusted.
    CrossOrigin,
    /// A WebSocket upgrade without an `Origin` we accept.
    WebSocketOrigin,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::CrossSite => "cross_site",
            Refused::CrossOrigin => "cross_origin",
            Refused::WebSocketOrigin => "websocket_origin",
        }
    }
}

impl Origins {
    /// Errors name the URL that is not an http(s) origin.
    pub fn new(public_url: &str, trusted: &[String]) -> Result<Origins, String> {
        Ok(Origins {
            public: origin(public_url, "public_url")?,
            trusted: trusted.iter().map(|t| origin(t, "trusted_origins")).collect::<Result<_, _>>()?,
        })
    }

    /// The verdict on a cookie-authenticated request with this method and these headers.
    pub fn check(&self, method: &[u8], sec_fetch_site: Option<&[u8]>, origin: Option<&[u8]>) -> Result<(), Refused> {
        if matches!(method, b"GET" | b"HEAD" | b"OPTIONS") {
            return Ok(());
        }
        match sec_fetch_site {
            Some(b"same-origin" | b"none") => return Ok(()),
            Some(_) if self.trusted_origin(origin) => return Ok(()),
            Some(_) => return Err(Refused::CrossSite),
            None => {}
        }
        match origin {
            None => Ok(()),
            Some(o) if self.allowed(o) => Ok(()),
            Some(_) => Err(Refused::CrossOrigin),
        }
    }

    /// A WebSocket upgrade authenticated by the cookie: browsers always send `Origin` with it, and
    /// it must be ours or trusted (cross-site WebSocket hijacking).
    pub fn check_websocket(&self, origin: Option<&[u8]>) -> Result<(), Refused> {
        match origin {
            Some(o) if self.allowed(o) => Ok(()),
            _ => Err(Refused::WebSocketOrigin),
        }
    }

    fn allowed(&self, origin: &[u8]) -> bool {
        origin == self.public.as_bytes() || self.trusted_origin(Some(origin))
    }

    fn trusted_origin(&self, origin: Option<&[u8]>) -> bool {
        origin.is_some_and(|o| self.trusted.iter().any(|t| t.as_bytes() == o))
    }
}

/// `url`'s origin as a browser serializes it in `Origin` (`https://host[:port]`, lowercase, the
/// default port left out).
fn origin(url: &str, key: &str) -> Result<String, String> {
    let parsed = super::http_url(url, key)?;
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(format!("{key} {url:?} must be an origin only (scheme, host and port)"));
    }
    Ok(parsed.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins() -> Origins {
        Origins::new("https://apps.example.com", &["https://admin.example.com:8443".into()]).unwrap()
    }

    #[test]
    fn safe_methods_are_never_checked() {
        let o = origins();
        for m in ["GET", "HEAD", "OPTIONS"] {
            assert_eq!(o.check(m.as_bytes(), Some(b"cross-site"), Some(b"https://evil.example")), Ok(()));
        }
    }

    #[test]
    fn fetch_metadata_decides_when_present() {
        let o = origins();
        assert_eq!(o.check(b"POST", Some(b"same-origin"), Some(b"https://evil.example")), Ok(()));
        assert_eq!(o.check(b"POST", Some(b"none"), None), Ok(()));
        assert_eq!(o.check(b"POST", Some(b"cross-site"), Some(b"https://evil.example")), Err(Refused::CrossSite));
        assert_eq!(o.check(b"DELETE", Some(b"same-site"), Some(b"https://other.example.com")), Err(Refused::CrossSite));
        assert_eq!(o.check(b"PUT", Some(b"cross-site"), None), Err(Refused::CrossSite));
        // Our own origin named with a cross-site fetch is still cross-site: the browser knows.
        assert_eq!(o.check(b"POST", Some(b"cross-site"), Some(b"https://apps.example.com")), Err(Refused::CrossSite));
        // A trusted origin may post across sites.
        assert_eq!(o.check(b"POST", Some(b"cross-site"), Some(b"https://admin.example.com:8443")), Ok(()));
    }

    #[test]
    fn older_browsers_are_judged_by_origin() {
        let o = origins();
        assert_eq!(o.check(b"POST", None, Some(b"https://apps.example.com")), Ok(()));
        assert_eq!(o.check(b"POST", None, Some(b"https://admin.example.com:8443")), Ok(()));
        for bad in [
            "https://evil.example",
            "null",
            "http://apps.example.com",
            "https://apps.example.com:444",
            "https://apps.example.com.evil.example",
        ] {
            assert_eq!(o.check(b"PATCH", None, Some(bad.as_bytes())), Err(Refused::CrossOrigin), "{bad}");
        }
        // Neither header: not sent by a web page.
        assert_eq!(o.check(b"POST", None, None), Ok(()));
    }

    #[test]
    fn refusals_have_their_audit_words() {
        assert_eq!(
            [Refused::CrossSite, Refused::CrossOrigin, Refused::WebSocketOrigin].map(Refused::as_str),
            ["cross_site", "cross_origin", "websocket_origin"]
        );
    }

    #[test]
    fn websocket_upgrades_need_an_origin_we_accept() {
        let o = origins();
        assert_eq!(o.check_websocket(Some(b"https://apps.example.com")), Ok(()));
        assert_eq!(o.check_websocket(Some(b"https://admin.example.com:8443")), Ok(()));
        assert_eq!(o.check_websocket(Some(b"https://evil.example")), Err(Refused::WebSocketOrigin));
        assert_eq!(o.check_websocket(None), Err(Refused::WebSocketOrigin));
    }

    #[test]
    fn origins_are_compared_as_browsers_serialize_them() {
        let o = Origins::new("HTTPS://Apps.Example.com:443/", &[]).unwrap();
        assert_eq!(o.check(b"POST", None, Some(b"https://apps.example.com")), Ok(()));
        for bad in ["apps.example.com", "ftp://apps.example.com", "https://apps.example.com/path", "https://u@apps.example.com"] {
            assert!(Origins::new(bad, &[]).is_err(), "{bad}");
        }
    }
}
