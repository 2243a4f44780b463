//! Lowering of `sessions:`: timeouts, store-outage and role-change behaviour.

use schemars::JsonSchema;
use serde::Deserialize;

use std::time::Duration;

use super::{problem, Problem};
use crate::auth::sessions::{OutageMode, RoleChange, SessionSettings};

/// `sessions:`: lifetimes and failure behaviour.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RawSessions {
    pub idle_timeout_minutes: u64,
    pub absolute_timeout_hours: u64,
    pub on_store_outage: String,
    pub on_role_change: String,
    pub activity_flush_seconds: u64,
    /// End a provider stream when the access token it started with expires.
    pub end_streams_at_expiry: bool,
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            idle_timeout_minutes: 30,
            absolute_timeout_hours: 168,
            on_store_outage: "serve_cached".into(),
            on_role_change: "refresh".into(),
            activity_flush_seconds: 5,
            end_streams_at_expiry: false,
        }
    }
}

pub(super) fn lower_sessions(s: &RawSessions, p: &mut Vec<Problem>) -> Option<SessionSettings> {
    let on_store_outage = match s.on_store_outage.as_str() {
        "serve_cached" => Some(OutageMode::ServeCached),
        "deny" => Some(OutageMode::Deny),
        other => {
            problem(p, "sessions.on_store_outage", format!("unknown mode `{other}`: use `serve_cached` or `deny`"));
            None
        }
    };
    let on_role_change = match s.on_role_change.as_str() {
        "refresh" => Some(RoleChange::Refresh),
        "revoke" => Some(RoleChange::Revoke),
        other => {
            problem(p, "sessions.on_role_change", format!("unknown mode `{other}`: use `refresh` or `revoke`"));
            None
        }
    };
    for (key, v) in [
        ("idle_timeout_minutes", s.idle_timeout_minutes),
        ("absolute_timeout_hours", s.absolute_timeout_hours),
        ("activity_flush_seconds", s.activity_flush_seconds),
    ] {
        if v == 0 {
            problem(p, &format!("sessions.{key}"), "must be greater than 0");
        }
    }
    let flush = Duration::from_secs(s.activity_flush_seconds.max(1));
    Some(SessionSettings {
        idle_timeout: Duration::from_secs(s.idle_timeout_minutes.checked_mul(60)?),
        absolute_timeout: Duration::from_secs(s.absolute_timeout_hours.checked_mul(3600)?),
        on_store_outage: on_store_outage?,
        on_role_change: on_role_change?,
        activity_flush: flush,
        end_streams_at_expiry: s.end_streams_at_expiry,
        reconcile_every: flush,
    })
}
