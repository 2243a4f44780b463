//! The limit phase: API rate limits on admitted requests (per user, or per client address when
//! public, then the route's own limit) and on failed authentications (per client address).
//! Local windows only: no store round trip on the request path.

use http::HeaderValue;
use serde_json::json;

use super::{Gateway, RequestCtx, Snapshot};
use crate::admission::{Identity, Reject};
use crate::audit::{Event, Origin};
use crate::auth::keys::KeyEntry;
use crate::limits::{self, Limit};
use crate::policy::{Route, RouteId};

impl Gateway {
    /// Applies the API limits to an admitted request: per user (or per IP when public), then the
    /// route's own limit. Allowed requests get RateLimit headers on their response.
    pub(super) fn limit_admitted(
        &self,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
        id: RouteId,
        route: &Route,
        identity: Option<&Identity>,
        api_key: Option<&KeyEntry>,
    ) -> Result<(), Reject> {
        let subject: [&str; 2] = match (identity, ctx.client_text()) {
            // A key is limited on its own, apart from its user's other keys and sessions.
            (Some(_), _) if api_key.is_some() => ["k:", api_key.map_or("", |k| k.record.id.as_str())],
            (Some(id), _) => ["u:", &id.user_id],
            (None, Some(text)) => ["ip:", text],
            (None, None) => return Ok(()),
        };
        let p = &snapshot.limit_policies;
        let key_limit = api_key.and_then(|k| k.record.rate_limit.as_deref()).and_then(|name| p.named.get_key_value(name));
        let general = match (identity, key_limit) {
            (Some(_), Some((name, (limit, policy)))) => Some((name.as_str(), *limit, policy.as_ref())),
            (Some(_), None) => snapshot.guards.rate_limits.api_user.map(|l| ("api_user", l, p.api_user.as_ref())),
            (None, _) => snapshot.guards.rate_limits.api_ip.map(|l| ("api_ip", l, p.api_ip.as_ref())),
        };
        // Both keys are made before either check (the subject may borrow from `ctx`).
        let general = general.map(|(name, limit, policy)| (name, limit, policy, Key::new(&[name, ":", subject[0], subject[1]])));
        let own = route.rate_limit.as_ref().map(|(name, limit)| {
            let policy = match id {
                RouteId::Configured(i) => p.routes.get(i).and_then(Option::as_ref),
                RouteId::Gateway(_) => None,
            };
            (name, *limit, policy, Key::new(&["route:", name, ":", subject[0], subject[1]]))
        });
        if let Some((name, limit, policy, key)) = general {
            self.check_limit(ctx, name, key.as_str(), limit, policy)?;
        }
        if let Some((name, limit, policy, key)) = own {
            self.check_limit(ctx, name, key.as_str(), limit, policy)?;
        }
        Ok(())
    }

    /// Counts a request that failed authentication against the per-IP limit.
    pub(super) fn limit_unauthenticated(&self, ctx: &mut RequestCtx, snapshot: &Snapshot) -> Result<(), Reject> {
        match (snapshot.guards.rate_limits.api_ip, ctx.client_text()) {
            (Some(limit), Some(ip)) => {
                let policy = snapshot.limit_policies.api_ip.as_ref();
                let key = Key::new(&["api_ip:ip:", ip]);
                self.check_limit(ctx, "api_ip", key.as_str(), limit, policy)
            }
            _ => Ok(()),
        }
    }

    /// One limit; `policy` is its `RateLimit-Policy` value, made at config load.
    fn check_limit(&self, ctx: &mut RequestCtx, name: &str, key: &str, limit: Limit, policy: Option<&HeaderValue>) -> Result<(), Reject> {
        let d = self.services.limiter.api(key, limit);
        if d.allowed {
            let state = HeaderValue::from_bytes(limits::state_value(name, &d, &mut [0; 128])).ok();
            ctx.limit_headers = policy.cloned().zip(state);
            return Ok(());
        }
        // The refusal carries the headers of the limit that refused it.
        ctx.limit_headers = None;
        let headers = limits::headers(name, limit, &d);
        if let Some(m) = &self.services.metrics {
            m.auth.rate_limited(name);
        }
        if let Some(a) = &self.services.audit {
            let origin = Origin { request_id: Some(&ctx.request_id), client_ip: ctx.client_text(), user_agent: None };
            let user = ctx.identity.as_ref().map(|i| i.user_id.as_str());
            a.emit(Event::new("ratelimit.hit", "denied", user, origin, json!({ "limit": name, "retry_after": d.retry_after_seconds })));
        }
        let mut reject = Reject::new(429, "rate_limited", "too many requests; retry later", "rate_limited");
        reject.headers = headers.to_vec();
        reject.headers.push(("retry-after", d.retry_after_seconds.to_string()));
        Err(reject)
    }
}

/// A limiter key, made on the stack when it fits: every request makes one or two, and the
/// limiter only needs an owned key for a subject it has not seen.
struct Key {
    buf: [u8; 128],
    len: usize,
    long: Option<String>,
}

impl Key {
    fn new(parts: &[&str]) -> Self {
        let len = parts.iter().map(|p| p.len()).sum();
        let mut key = Key { buf: [0; 128], len, long: None };
        if len > key.buf.len() {
            key.long = Some(parts.concat());
            return key;
        }
        let mut at = 0;
        for p in parts {
            key.buf[at..at + p.len()].copy_from_slice(p.as_bytes());
            at += p.len();
        }
        key
    }

    fn as_str(&self) -> &str {
        match &self.long {
            Some(s) => s,
            // Whole `str`s copied end to end are UTF-8.
            None => std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn keys_join_their_parts_short_or_long() {
        assert_eq!(Key::new(&["api_user", ":", "u:", "42"]).as_str(), "api_user:u:42");
        assert_eq!(Key::new(&[]).as_str(), "");
        let long = "é".repeat(100);
        assert_eq!(Key::new(&["route:", "r", ":", "u:", &long]).as_str(), format!("route:r:u:{long}"));
        let edge = "x".repeat(128);
        assert_eq!(Key::new(&[&edge]).as_str(), edge, "exactly the buffer's size stays on the stack");
    }
}
