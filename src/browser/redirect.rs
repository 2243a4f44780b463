//! Where a browser goes after signing in (`rd=`): a relative path on the gateway's own origin, or
//! an absolute `http(s)` URL whose host the operator listed. The target is parsed the way the
//! browser will parse the `Location` it is sent to (the WHATWG URL algorithm of the `url` crate),
//! never matched by prefix or suffix: `//evil.example`, `/\evil.example`,
//! `https://apps.example.com.evil.example`, `javascript:` and their encoded and whitespace-padded
//! variants stay on the site (CVE-2021-21291 and CVE-2020-5233 were this check done by string
//! matching in two peers).

use url::Url;

/// Where a sign-in may send the browser back to.
#[derive(Debug, Clone)]
pub struct Redirects {
    /// The origin browsers see (`browser.public_url`).
    public: Url,
    /// `browser.allowed_redirect_hosts`: `host` (the scheme's default port), `host:port`, or
    /// `host:*` (any port), lowercase.
    allowed: Vec<Allowed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    host: String,
    port: PortRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    Default,
    Exactly(u16),
    Any,
}

/// Why a `rd=` was not followed (the sign-in then goes to `/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Control characters, whitespace or a backslash: browsers drop or reinterpret them, so the
    /// target they would follow is not the one that was checked.
    Ambiguous,
    /// Neither a path on this origin nor an `http(s)` URL.
    NotAUrl,
    /// An absolute URL on a host that is not ours nor listed.
    OffSite,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Ambiguous => "ambiguous",
            Refused::NotAUrl => "not_a_url",
            Refused::OffSite => "off_site",
        }
    }
}

impl Redirects {
    /// `public_url` must be an absolute `http(s)` URL; each allowed host is `host`,
    /// `host:port` or `host:*`. Errors say which entry is wrong.
    pub fn new(public_url: &str, allowed_hosts: &[String]) -> Result<Redirects, String> {
        let public = super::http_url(public_url, "public_url")?;
        let allowed = allowed_hosts.iter().map(|h| allowed(h)).collect::<Result<_, _>>()?;
        Ok(Redirects { public, allowed })
    }

    /// The URL a browser is sent to after signing in: `rd` itself when it is safe to follow.
    /// An empty or missing `rd` is `/`.
    pub fn target(&self, rd: Option<&str>) -> Result<String, Refused> {
        let rd = rd.unwrap_or("");
        if rd.is_empty() {
            return Ok("/".to_string());
        }
        // Browsers strip tabs and newlines anywhere in a URL and spaces at its ends, and read `\`
        // as `/`: refuse them rather than guess which URL the browser would make of them.
        if rd.bytes().any(|b| b <= b' ' || b == b'\\' || b == 0x7f) {
            return Err(Refused::Ambiguous);
        }
        if rd.starts_with('/') {
            if rd.starts_with("//") {
                return Err(Refused::OffSite); // scheme-relative: another host
            }
            // Resolved against our origin, as the browser will: it must stay on it.
            let url = self.public.join(rd).map_err(|_| Refused::NotAUrl)?;
            return if same_origin(&url, &self.public) { Ok(rd.to_string()) } else { Err(Refused::OffSite) };
        }
        let url = Url::parse(rd).map_err(|_| Refused::NotAUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::NotAUrl);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Ambiguous); // `https://ours@theirs`: a host hidden in plain sight
        }
        if same_origin(&url, &self.public) || self.allowed.iter().any(|a| a.matches(&url)) {
            Ok(url.to_string())
        } else {
            Err(Refused::OffSite)
        }
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

fn allowed(entry: &str) -> Result<Allowed, String> {
    let wrong = |why: &str| format!("allowed_redirect_hosts entry {entry:?} {why} (host, host:port or host:*)");
    // `host:port` or `host:*`; a colon inside an unbracketed IPv6 address is not a port.
    let (host, port) = match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            let port = match p {
                "*" => PortRule::Any,
                p => PortRule::Exactly(p.parse().map_err(|_| wrong("has a port that is not a number"))?),
            };
            (h, port)
        }
        _ => (entry, PortRule::Default),
    };
    // The host in the form URLs carry it in (lowercase, IDNA to punycode, IPs normalized).
    let url = Url::parse(&format!("http://{host}/")).map_err(|_| wrong("is not a host name"))?;
    match url.host_str() {
        Some(h) if !h.is_empty() && url.username().is_empty() && url.port().is_none() && url.path() == "/" => {
            Ok(Allowed { host: h.to_string(), port })
        }
        _ => Err(wrong("is not a host name")),
    }
}

impl Allowed {
    fn matches(&self, url: &Url) -> bool {
        url.host_str() == Some(self.host.as_str())
            && match self.port {
                PortRule::Any => true,
                PortRule::Exactly(p) => url.port_or_known_default() == Some(p),
                PortRule::Default => url.port().is_none(),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirects() -> Redirects {
        Redirects::new("https://apps.example.com", &["docs.example.com".into(), "wiki.example.com:8443".into(), "dev.example.com:*".into()])
            .unwrap()
    }

    #[test]
    fn paths_on_our_origin_and_listed_hosts_are_followed() {
        let r = redirects();
        for (rd, to) in [
            ("/wiki/page?x=1#top", "/wiki/page?x=1#top"),
            ("/", "/"),
            ("/%2F%2Fevil.example", "/%2F%2Fevil.example"), // a path on our origin, as the browser reads it
            ("/a/../b", "/a/../b"),
            ("https://apps.example.com/x", "https://apps.example.com/x"),
            ("https://APPS.example.com:443/x", "https://apps.example.com/x"),
            ("https://docs.example.com/guide", "https://docs.example.com/guide"),
            ("http://docs.example.com/guide", "http://docs.example.com/guide"),
            ("https://wiki.example.com:8443/", "https://wiki.example.com:8443/"),
            ("https://dev.example.com:3000/", "https://dev.example.com:3000/"),
        ] {
            assert_eq!(r.target(Some(rd)), Ok(to.to_string()), "{rd}");
        }
        assert_eq!(r.target(None), Ok("/".into()));
        assert_eq!(r.target(Some("")), Ok("/".into()));
    }

    #[test]
    fn nothing_leaves_the_site() {
        let r = redirects();
        let attacks = [
            "//evil.example",
            "///evil.example",
            "////evil.example/x",
            "/\\evil.example",
            "\\/evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            " //evil.example",
            "//evil.example ",
            "https://evil.example",
            "https://apps.example.com.evil.example/",
            "https://evil.example/apps.example.com",
            "https://evil.example#@apps.example.com",
            "https://evil.example?apps.example.com",
            "https://apps.example.com@evil.example/",
            "https://apps.example.com:443@evil.example/",
            "https://apps.example.com\\@evil.example/",
            "https:evil.example",
            "https:/evil.example",
            "HTTPS://EVIL.EXAMPLE/",
            "javascript:alert(1)",
            "JavaScript:alert(document.cookie)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
            "%2F%2Fevil.example",
            "%2f%5cevil.example",
            "evil.example",
            "https://docs.example.com.evil.example/",
            "https://xdocs.example.com/",
            "https://docs.example.com:8080/", // listed without a port: the default one only
            "https://wiki.example.com/",      // listed with 8443 only
            "https://аpps.example.com/",      // a Cyrillic а
            "ftp://docs.example.com/",
            "http://apps.example.com/", // our host, another scheme: another origin
            "https://apps.example.com:8443/",
            "\u{0}//evil.example",
            "/\u{7f}/evil.example",
        ];
        assert!(attacks.len() >= 20);
        for rd in attacks {
            assert!(r.target(Some(rd)).is_err(), "{rd:?} was followed to {:?}", r.target(Some(rd)));
        }
    }

    #[test]
    fn each_refusal_says_why() {
        let r = redirects();
        for (rd, why) in [
            ("/\\evil.example", Refused::Ambiguous),
            ("/\t/evil.example", Refused::Ambiguous),
            ("https://apps.example.com@evil.example/", Refused::Ambiguous),
            ("//evil.example", Refused::OffSite),
            ("https://apps.example.com.evil.example/", Refused::OffSite),
            ("https://docs.example.com:8080/", Refused::OffSite),
            ("javascript:alert(1)", Refused::NotAUrl),
            ("%2F%2Fevil.example", Refused::NotAUrl),
        ] {
            assert_eq!(r.target(Some(rd)), Err(why), "{rd:?}");
        }
        assert_eq!([Refused::Ambiguous, Refused::NotAUrl, Refused::OffSite].map(Refused::as_str), ["ambiguous", "not_a_url", "off_site"]);
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        assert!(Redirects::new("apps.example.com", &[]).unwrap_err().contains("public_url"));
        assert!(Redirects::new("ftp://apps.example.com", &[]).unwrap_err().contains("http"));
        for entry in ["", "host:port", "a/b", "user@host", "::1"] {
            let e = Redirects::new("https://apps.example.com", &[entry.into()]).unwrap_err();
            assert!(e.contains("allowed_redirect_hosts"), "{entry}: {e}");
        }
        assert!(Redirects::new("https://apps.example.com", &["[::1]:8080".into(), "Docs.Example.COM".into()]).is_ok());
    }

    #[test]
    fn listed_hosts_are_compared_in_url_form() {
        let r = Redirects::new("https://apps.example.com", &["Docs.Example.COM".into()]).unwrap();
        assert!(r.target(Some("https://docs.example.com/")).is_ok());
    }
}
