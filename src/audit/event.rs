//! The audit record: one event, its details, and how it is written as one JSON line. Built on
//! the request path with as little work as possible and written into its line there (the
//! writer task only concatenates lines).

use serde::Serialize;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// One audit record (the owned form, for every event but the per-request `access` one, which
/// is an [`AccessEvent`] borrowed from its request).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    /// RFC 3339, UTC, milliseconds.
    #[serde(rename = "timestamp", serialize_with = "rfc3339_ms")]
    pub at: SystemTime,
    /// A stable kind: `access`, `auth.login`, `auth.token_rejected`, `admin.user_created`, ...
    pub event: &'static str,
    /// `granted`, `denied`, `success`, `failure`, ...
    pub status: &'static str,
    pub user_id: Option<String>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: Details,
}

/// An event's `details` object.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Details {
    Json(Value),
    /// An `access` decision (the most frequent event by far), with typed fields.
    Access(Box<AccessDetails>),
}

impl From<Value> for Details {
    fn from(v: Value) -> Self {
        Details::Json(v)
    }
}

/// `details` of an `access` event, granted or denied: who (the event's `user_id`, and here the
/// role and session), what (route, method, path, the `resource:action` or role required), and
/// the decision's reason and status. Keys in alphabetical order, like the other events'.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccessDetails {
    /// The API key the request was judged on, if any (its id; never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    /// The subject of the verified TLS client certificate the request was judged on, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    #[serde(serialize_with = "method_str")]
    pub method: http::Method,
    pub path: Option<String>,
    /// Why: a refusal's reason word (`insufficient_role`, `expired`, ...), or `authorized` /
    /// `public_route` for a grant.
    pub reason: &'static str,
    pub requirement: Option<String>,
    pub role: Option<String>,
    pub route: Option<String>,
    pub session_id: Option<String>,
    pub status: u16,
}

fn method_str<S: serde::Serializer>(m: &http::Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

/// `2026-11-28T02:30:00.123Z`. The date and time part is formatted once per second.
fn rfc3339_ms<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let mut out = Vec::with_capacity(24);
    timestamp(at, &mut out);
    s.serialize_str(std::str::from_utf8(&out).unwrap_or_default())
}

/// Appends `2026-11-28T02:30:00.123Z` (the date and time part is formatted once per second).
fn timestamp(at: &SystemTime, out: &mut Vec<u8>) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    LAST.with_borrow_mut(|(secs, text)| {
        if *secs != d.as_secs() {
            *secs = d.as_secs();
            *text = crate::timefmt::rfc3339(d.as_secs());
            text.truncate(text.len() - 1); // the `Z`, written after the milliseconds
            text.push('.');
        }
        let ms = d.subsec_millis();
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(&[b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8, b'Z']);
    })
}

// === the JSON line ===
//
// Written directly rather than through serde: the access event is written once per request, and
// serde_json's generic path cost ~5k instructions an event (bench/callgrind.sh); this one copies
// strings that need no escaping in one piece. The output is the same JSON as the `Serialize`
// impls give (a unit test compares them).

/// Appends `s` as a JSON string.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escaped(out, s);
    out.push(b'"');
}

/// Appends `s` escaped for a JSON string, without its quotes.
fn escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Almost every string needs no escaping: one branch-free pass (which the compiler turns into
    // vector code) finds that, and the string is copied in one piece.
    let plain = bytes.iter().fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `,"key":` (or `"key":` first in an object).
fn key(out: &mut Vec<u8>, first: bool, k: &str) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"\":");
}

fn opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// The fields every event starts with, written as the line's head (up to `"details":`).
struct Head<'a> {
    at: &'a SystemTime,
    event: &'static str,
    status: &'static str,
    user_id: Option<&'a str>,
    request_id: Option<&'a str>,
    client_ip: Option<&'a str>,
    user_agent: Option<&'a str>,
}

impl Head<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(self.at, out);
        out.push(b'"');
        out.extend_from_slice(concat!(",\"", "event", "\":").as_bytes());
        json_str(out, self.event);
        out.extend_from_slice(concat!(",\"", "status", "\":").as_bytes());
        json_str(out, self.status);
        // Each key with its comma and colon as one literal: one copy instead of four pushes.
        out.extend_from_slice(b",\"user_id\":");
        opt_str(out, self.user_id);
        out.extend_from_slice(b",\"request_id\":");
        opt_str(out, self.request_id);
        out.extend_from_slice(b",\"client_ip\":");
        opt_str(out, self.client_ip);
        out.extend_from_slice(b",\"user_agent\":");
        opt_str(out, self.user_agent);
        out.extend_from_slice(concat!(",\"", "details", "\":").as_bytes());
    }
}

/// What can be queued as one audit line.
pub trait Line {
    /// The event's kind, for `audit_events_total`.
    fn kind(&self) -> &'static str;
    /// Appends the event as one JSON object (no newline).
    fn write_json(&self, out: &mut Vec<u8>);
}

impl Line for Event {
    fn kind(&self) -> &'static str {
        self.event
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        Head {
            at: &self.at,
            event: self.event,
            status: self.status,
            user_id: self.user_id.as_deref(),
            request_id: self.request_id.as_deref(),
            client_ip: self.client_ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
        }
        .write_json(out);
        match &self.details {
            // Writing a Value into a Vec cannot fail.
            Details::Json(v) => {
                let _ = serde_json::to_writer(&mut *out, v);
            }
            Details::Access(d) => d.borrowed().write_json(out),
        }
        out.push(b'}');
    }
}

/// An `access` event borrowed from the request it is about: written straight into its line on
/// the request's thread, with no field copied into an owned event first (the access event is
/// written once per request; its copies and their frees were ~1k instructions).
pub struct AccessEvent<'a> {
    pub at: SystemTime,
    /// `granted` or `denied`.
    pub status: &'static str,
    pub user_id: Option<&'a str>,
    pub origin: Origin<'a>,
    pub details: Access<'a>,
}

impl Line for AccessEvent<'_> {
    fn kind(&self) -> &'static str {
        "access"
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        Head {
            at: &self.at,
            event: "access",
            status: self.status,
            user_id: self.user_id,
            request_id: self.origin.request_id,
            client_ip: self.origin.client_ip,
            user_agent: self.origin.user_agent.map(clipped),
        }
        .write_json(out);
        self.details.write_json(out);
        out.push(b'}');
    }
}

/// What a route requires, as the access event's `requirement` names it (`role:editor`,
/// `projects:read`, `authenticated`, `public`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Requirement<'a> {
    Word(&'a str),
    Pair(&'a str, &'a str),
}

impl Requirement<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match *self {
            Requirement::Word(w) => json_str(out, w),
            Requirement::Pair(a, b) => {
                out.push(b'"');
                escaped(out, a);
                out.push(b':');
                escaped(out, b);
                out.push(b'"');
            }
        }
    }
}

/// [`AccessDetails`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    pub api_key_id: Option<&'a str>,
    pub client_cert: Option<&'a str>,
    pub method: &'a str,
    pub path: Option<&'a str>,
    pub reason: &'static str,
    pub requirement: Option<Requirement<'a>>,
    pub role: Option<&'a str>,
    pub route: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub status: u16,
}

impl Access<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (name, v) in [("api_key_id", self.api_key_id), ("client_cert", self.client_cert)] {
            if let Some(v) = v {
                key(out, first, name);
                json_str(out, v);
                first = false;
            }
        }
        let method: &[u8] = if first { b"\"method\":" } else { b",\"method\":" };
        out.extend_from_slice(method);
        json_str(out, self.method);
        out.extend_from_slice(concat!(",\"", "path", "\":").as_bytes());
        opt_str(out, self.path);
        out.extend_from_slice(concat!(",\"", "reason", "\":").as_bytes());
        json_str(out, self.reason);
        out.extend_from_slice(concat!(",\"", "requirement", "\":").as_bytes());
        match &self.requirement {
            Some(r) => r.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(concat!(",\"", "role", "\":").as_bytes());
        opt_str(out, self.role);
        out.extend_from_slice(concat!(",\"", "route", "\":").as_bytes());
        opt_str(out, self.route);
        out.extend_from_slice(concat!(",\"", "session_id", "\":").as_bytes());
        opt_str(out, self.session_id);
        out.extend_from_slice(concat!(",\"", "status", "\":").as_bytes());
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.push(b'}');
    }
}

impl AccessDetails {
    /// The same details, borrowed (one writer for both).
    pub fn borrowed(&self) -> Access<'_> {
        Access {
            api_key_id: self.api_key_id.as_deref(),
            client_cert: self.client_cert.as_deref(),
            method: self.method.as_str(),
            path: self.path.as_deref(),
            reason: self.reason,
            requirement: self.requirement.as_deref().map(Requirement::Word),
            role: self.role.as_deref(),
            route: self.route.as_deref(),
            session_id: self.session_id.as_deref(),
            status: self.status,
        }
    }
}

/// Request context an event is about.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    pub request_id: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// User agents are kept to their first 256 characters.
fn clipped(s: &str) -> &str {
    match s.char_indices().nth(256) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

fn clip(s: &str) -> String {
    clipped(s).to_string()
}

impl Event {
    /// A new event stamped now.
    pub fn new(event: &'static str, status: &'static str, user_id: Option<&str>, origin: Origin<'_>, details: impl Into<Details>) -> Self {
        Event {
            at: SystemTime::now(),
            event,
            status,
            user_id: user_id.map(str::to_string),
            request_id: origin.request_id.map(str::to_string),
            client_ip: origin.client_ip.map(str::to_string),
            user_agent: origin.user_agent.map(clip),
            details: details.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_as_one_json_object_with_the_contract_fields() {
        let e = Event::new(
            "auth.login",
            "failure",
            Some("7"),
            Origin { request_id: Some("r1"), client_ip: Some("10.0.0.1"), user_agent: Some("ua") },
            serde_json::json!({"reason": "invalid_credentials"}),
        );
        let v: Value = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        for k in ["timestamp", "event", "status", "user_id", "request_id", "client_ip", "user_agent", "details"] {
            assert!(v.get(k).is_some(), "{k}");
        }
        let ts = v["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
    }

    #[test]
    fn timestamps_carry_milliseconds_across_second_boundaries() {
        let stamp = |ms: u64| {
            let e = Event {
                at: UNIX_EPOCH + std::time::Duration::from_millis(ms),
                ..Event::new("a", "b", None, Origin::default(), Value::Null)
            };
            serde_json::to_value(&e).unwrap()["timestamp"].as_str().unwrap().to_string()
        };
        assert_eq!(stamp(1_795_822_077_999), "2026-11-27T23:27:57.999Z");
        assert_eq!(stamp(1_795_822_078_000), "2026-11-27T23:27:58.000Z");
        assert_eq!(stamp(1_795_822_078_042), "2026-11-27T23:27:58.042Z");
        assert_eq!(stamp(1_795_822_077_500), "2026-11-27T23:27:57.500Z");
    }

    #[test]
    fn access_details_serialize_like_the_json_they_replace() {
        let g = AccessDetails {
            api_key_id: None,
            client_cert: None,
            method: http::Method::GET,
            path: Some("/api/x".into()),
            reason: "authorized",
            requirement: Some("role:user".into()),
            role: Some("admin".into()),
            route: Some("api".into()),
            session_id: Some("s1".into()),
            status: 200,
        };
        let json = serde_json::json!({"method": "GET", "path": "/api/x", "reason": "authorized", "requirement": "role:user", "role": "admin", "route": "api", "session_id": "s1", "status": 200});
        assert_eq!(serde_json::to_string(&Details::Access(Box::new(g))).unwrap(), serde_json::to_string(&json).unwrap());
        assert_eq!(clip(&"é".repeat(300)).chars().count(), 256);
        assert_eq!(clip("wrk"), "wrk");
    }

    #[test]
    fn the_direct_json_line_is_the_same_json_as_serde_gives() {
        let access = AccessDetails {
            api_key_id: Some("k1".into()),
            client_cert: Some("CN=a\"b".into()),
            method: http::Method::DELETE,
            path: Some("/a\"b\\c\u{1}d\n".into()),
            reason: "insufficient_role",
            requirement: None,
            role: Some("ü-role".into()),
            route: Some("r".into()),
            session_id: None,
            status: 403,
        };
        let origin = Origin { request_id: Some("r1"), client_ip: Some("10.0.0.1"), user_agent: Some("curl/8 \"quoted\" \t tab") };
        let events = [
            Event::new("access", "denied", Some("u\"1"), origin, Details::Access(Box::new(access.clone()))),
            Event::new(
                "access",
                "granted",
                None,
                origin,
                Details::Access(Box::new(AccessDetails { api_key_id: None, client_cert: Some("CN=x".into()), ..access })),
            ),
            Event::new("auth.login", "failure", None, Origin::default(), serde_json::json!({"reason": "x", "n": [1, 2]})),
            Event::new("config.reload", "success", None, Origin::default(), Value::Null),
        ];
        for e in events {
            let mut line = Vec::new();
            e.write_json(&mut line);
            let direct: Value = serde_json::from_slice(&line).expect("valid JSON");
            assert_eq!(direct, serde_json::to_value(&e).unwrap());
            assert_eq!(String::from_utf8(line).unwrap(), serde_json::to_string(&e).unwrap(), "the same bytes, key order included");
        }
    }

    #[test]
    fn a_borrowed_access_event_writes_the_same_line_as_the_owned_one() {
        let owned = AccessDetails {
            api_key_id: None,
            client_cert: Some("CN=x".into()),
            method: http::Method::GET,
            path: Some("/p\"q".into()),
            reason: "authorized",
            requirement: Some("proj\"ects:re\\ad".into()),
            role: Some("user".into()),
            route: Some("api".into()),
            session_id: Some("s1".into()),
            status: 200,
        };
        let long_agent = "é".repeat(300);
        let origin = Origin { request_id: Some("r1"), client_ip: Some("10.0.0.1"), user_agent: Some(&long_agent) };
        let event = Event::new("access", "granted", Some("u1"), origin, Details::Access(Box::new(owned.clone())));
        let at = event.at;
        let borrowed = AccessEvent {
            at,
            status: "granted",
            user_id: Some("u1"),
            origin,
            details: Access { requirement: Some(Requirement::Pair("proj\"ects", "re\\ad")), ..owned.borrowed() },
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        event.write_json(&mut a);
        borrowed.write_json(&mut b);
        assert_eq!(String::from_utf8(b).unwrap(), String::from_utf8(a.clone()).unwrap());
        assert_eq!((borrowed.kind(), Line::kind(&event)), ("access", "access"));
        let v: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["details"]["requirement"], "proj\"ects:re\\ad");
        assert_eq!(v["user_agent"].as_str().unwrap().chars().count(), 256, "clipped");
    }
}
