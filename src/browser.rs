//! Signing people in with a browser: the parts that are pure decisions.
//!
//! - [`redirect`]: where a browser may be sent after signing in (`rd=`).
//! - [`csrf`]: whether a cookie-borne request comes from our own pages.
//! - [`pkce`]: one sign-in attempt's secrets (PKCE S256, `state`, `nonce`).

pub mod csrf;
pub mod pkce;
pub mod redirect;

/// `url` as an absolute `http(s)` URL with a host; the error names the setting (`key`).
fn http_url(url: &str, key: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{key} {url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{key} {url:?} must be an http:// or https:// URL with a host"));
    }
    Ok(parsed)
}
