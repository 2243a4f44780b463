//! The admin denylist: entries that cut off a user, one access token (`jti`), an API key or a
//! whole identity provider before their credentials expire, and the local view every
//! authenticated request is checked against (a few hash lookups, no store round trip).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use crate::policy::{Credential, Identity};

/// What an entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// Every credential of a user: access tokens, sessions, API keys, certificates.
    UserId,
    /// One access token, by its `jti`.
    Jti,
    /// One API key, by its id.
    ApiKeyId,
    /// Every token of an external identity provider, by its name.
    Issuer,
}

impl Subject {
    /// The field name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::UserId => "user_id",
            Subject::Jti => "jti",
            Subject::ApiKeyId => "api_key_id",
            Subject::Issuer => "issuer",
        }
    }
}

/// One denylist entry, as the store keeps it and the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyEntry {
    pub id: String,
    pub subject: Subject,
    pub value: String,
    pub reason: String,
    /// The admin who made it.
    pub created_by: String,
    pub created_at: u64,
    /// When it lapses by itself (None: until lifted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl DenyEntry {
    /// Whether the entry is in force at `now`.
    pub fn in_force(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// The local view: per subject, value -> in force until (u64::MAX: until lifted).
#[derive(Debug, Default)]
pub struct Denylist {
    by: [HashMap<String, u64, foldhash::fast::RandomState>; 4],
    len: usize,
}

fn slot(s: Subject) -> usize {
    match s {
        Subject::UserId => 0,
        Subject::Jti => 1,
        Subject::ApiKeyId => 2,
        Subject::Issuer => 3,
    }
}

impl Denylist {
    /// The view of the entries in force at `now`.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a DenyEntry>, now: u64) -> Self {
        let mut list = Denylist::default();
        for e in entries.into_iter().filter(|e| e.in_force(now)) {
            let until = e.expires_at.unwrap_or(u64::MAX);
            let slot = list.by[slot(e.subject)].entry(e.value.clone()).or_insert(0);
            *slot = (*slot).max(until);
            list.len += 1;
        }
        list
    }

    /// How many entries are in force.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none (then a check costs nothing).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn holds(&self, s: Subject, value: &str, now: u64) -> bool {
        self.by[slot(s)].get(value).is_some_and(|until| *until > now)
    }

    /// The subject of the first entry that cuts `identity` off at `now`, if any.
    pub fn denies(&self, identity: &Identity, now: u64) -> Option<Subject> {
        if self.is_empty() {
            return None;
        }
        if self.holds(Subject::UserId, &identity.user_id, now) {
            return Some(Subject::UserId);
        }
        match &identity.credential {
            Credential::Session { jti, .. } if self.holds(Subject::Jti, jti, now) => return Some(Subject::Jti),
            Credential::ApiKey { id } if self.holds(Subject::ApiKeyId, id, now) => return Some(Subject::ApiKeyId),
            Credential::External { jti: Some(jti), .. } if self.holds(Subject::Jti, jti, now) => return Some(Subject::Jti),
            _ => {}
        }
        identity.provider().filter(|i| self.holds(Subject::Issuer, i, now)).map(|_| Subject::Issuer)
    }

    /// Whether some entry has lapsed by `now` (then the view is rebuilt, and the store cleaned).
    pub fn has_lapsed(&self, now: u64) -> bool {
        self.by.iter().any(|m| m.values().any(|until| *until <= now))
    }

    /// Whether a user is cut off (logins and refreshes check it).
    pub fn denies_user(&self, user_id: &str, now: u64) -> bool {
        self.holds(Subject::UserId, user_id, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(subject: Subject, value: &str, expires_at: Option<u64>) -> DenyEntry {
        DenyEntry {
            id: format!("{}-{value}", subject.as_str()),
            subject,
            value: value.into(),
            reason: "test".into(),
            created_by: "admin".into(),
            created_at: 0,
            expires_at,
        }
    }

    #[test]
    fn each_subject_matches_only_its_own_credentials() {
        let list = Denylist::new(
            &[
                entry(Subject::UserId, "mallory", None),
                entry(Subject::Jti, "j1", Some(100)),
                entry(Subject::ApiKeyId, "k1", None),
                entry(Subject::Issuer, "corp", None),
            ],
            10,
        );
        assert_eq!(list.len(), 4);
        let session = |user: &str, jti: &str| Identity::session(user, None, "s", jti);
        let key = |user: &str, id: &str| Identity {
            user_id: user.into(),
            role: None,
            credential: Credential::ApiKey { id: id.into() },
            scopes: None,
        };
        let external = |provider: &str, jti: Option<&str>| Identity {
            user_id: "ext".into(),
            role: None,
            credential: Credential::External { provider: provider.into(), jti: jti.map(str::to_string), exp: u64::MAX },
            scopes: None,
        };
        assert_eq!(list.denies(&session("mallory", "x"), 10), Some(Subject::UserId));
        assert_eq!(list.denies(&key("mallory", "k9"), 10), Some(Subject::UserId), "a user's keys too");
        assert_eq!(list.denies(&session("alice", "j1"), 10), Some(Subject::Jti));
        assert_eq!(list.denies(&session("alice", "j1"), 100), None, "the jti entry lapsed");
        assert_eq!(list.denies(&key("alice", "k1"), 10), Some(Subject::ApiKeyId));
        assert_eq!(list.denies(&key("alice", "j1"), 10), None, "a key id is not a jti");
        assert_eq!(list.denies(&session("alice", "k1"), 10), None, "a jti is not a key id");
        assert_eq!(list.denies(&external("corp", None), 10), Some(Subject::Issuer));
        assert_eq!(list.denies(&external("other", Some("j1")), 10), Some(Subject::Jti), "an external token's jti");
        assert_eq!(list.denies(&external("other", None), 10), None);
        assert!(list.denies_user("mallory", 10));
        assert!(!list.denies_user("alice", 10));
    }

    #[test]
    fn lapsed_entries_are_left_out_and_an_empty_list_denies_nothing() {
        let list = Denylist::new(&[entry(Subject::UserId, "a", Some(5))], 5);
        assert!(list.is_empty());
        assert_eq!(list.denies(&Identity::session("a", None, "s", "j"), 1), None);
        let list = Denylist::new(&[entry(Subject::UserId, "a", Some(5))], 4);
        assert!(!list.has_lapsed(4));
        assert!(list.has_lapsed(5));
    }
}
