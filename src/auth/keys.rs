//! API keys at run time: the record the store keeps of each key, and the local view every
//! proxied request with a key is checked against (no store round trip).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

use crate::apikey::{from_hex, KeyHasher, PresentedKey};
use crate::policy::{Credential, Identity};

/// `api_keys:` in gateway.yaml, validated.
#[derive(Debug, Clone)]
pub struct ApiKeySettings {
    /// Hashes keys under the secret of `api_keys.secret_env`.
    pub hasher: KeyHasher,
    /// Users may create keys of their own role or lower.
    pub self_service: bool,
    /// The most keys one user may hold.
    pub max_per_user: usize,
}

/// What the store keeps of a key: never the key, only its keyed hash and last four characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// HMAC-SHA-256 of the whole key under `api_keys.secret_env`, lower-case hex.
    pub hash: String,
    pub last4: String,
    pub created_at: u64,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// A limit of `rate_limits.routes` counted per key (None: the per-user API default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
}

/// One key in the local view: its record, its hash decoded, and the identity it speaks for
/// (made once, shared by every request).
#[derive(Debug)]
pub struct KeyEntry {
    pub record: ApiKeyRecord,
    hash: [u8; 32],
    pub identity: Arc<Identity>,
}

impl KeyEntry {
    /// The entry for a stored record; None if the record's hash is not a hash.
    pub fn new(record: ApiKeyRecord) -> Option<Self> {
        let hash = from_hex(&record.hash)?;
        let identity = Arc::new(Identity {
            user_id: record.user_id.clone(),
            role: Some(record.role.clone()),
            credential: Credential::ApiKey { id: record.id.clone() },
            scopes: record.scopes.clone(),
        });
        Some(KeyEntry { record, hash, identity })
    }
}

/// Why a well-formed key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No key has this id (never issued, or revoked).
    Unknown,
    /// A key has this id but the rest does not match it.
    Mismatch,
    /// The key is past its `expires_at`.
    Expired,
}

impl KeyRefusal {
    /// The reason for audit events and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            KeyRefusal::Unknown => "unknown_key",
            KeyRefusal::Mismatch => "unknown_key",
            KeyRefusal::Expired => "expired_key",
        }
    }

    /// What the client is told (the same for unknown and mismatched: nothing to probe ids with).
    pub fn message(self) -> &'static str {
        match self {
            KeyRefusal::Unknown | KeyRefusal::Mismatch => "the API key is not valid",
            KeyRefusal::Expired => "the API key has expired",
        }
    }
}

/// Every key this instance knows, by id.
pub type KeyView = HashMap<String, Arc<KeyEntry>, foldhash::fast::RandomState>;

/// Checks a well-formed key against the view: known id, matching keyed hash, not expired.
pub fn check_key<'v>(view: &'v KeyView, hasher: &KeyHasher, key: PresentedKey<'_>, now: u64) -> Result<&'v Arc<KeyEntry>, KeyRefusal> {
    let entry = view.get(key.id()).ok_or(KeyRefusal::Unknown)?;
    if !hasher.verify(key.expose(), &entry.hash) {
        return Err(KeyRefusal::Mismatch);
    }
    if entry.record.expires_at.is_some_and(|e| e <= now) {
        return Err(KeyRefusal::Expired);
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::{generate, parse, to_hex};

    fn record(key: &str, id: &str, hasher: &KeyHasher, expires_at: Option<u64>) -> ApiKeyRecord {
        ApiKeyRecord {
            id: id.into(),
            name: "ci".into(),
            user_id: "bot".into(),
            role: "user".into(),
            scopes: Some(vec!["projects.read".into()]),
            hash: to_hex(&hasher.hash(key)),
            last4: key[key.len() - 4..].into(),
            created_at: 1,
            created_by: "admin".into(),
            expires_at,
            rate_limit: None,
        }
    }

    #[test]
    fn a_key_is_known_matched_and_unexpired() {
        let hasher = KeyHasher::new(&[1; 32]);
        let (key, id) = generate().unwrap();
        let (other, other_id) = generate().unwrap();
        let (late, late_id) = generate().unwrap();
        let mut view = KeyView::default();
        for (k, i, e) in [(&key, &id, None), (&late, &late_id, Some(100))] {
            view.insert(i.clone(), Arc::new(KeyEntry::new(record(k, i, &hasher, e)).unwrap()));
        }
        let ok = check_key(&view, &hasher, parse(&key).unwrap(), 50).unwrap();
        assert_eq!(ok.identity.user_id, "bot");
        assert_eq!(ok.identity.api_key_id(), Some(id.as_str()));
        assert_eq!(ok.identity.scopes.as_deref(), Some(&["projects.read".to_string()][..]));
        assert_eq!(check_key(&view, &hasher, parse(&other).unwrap(), 50).unwrap_err(), KeyRefusal::Unknown);
        assert_eq!(check_key(&view, &hasher, parse(&late).unwrap(), 99).unwrap().record.id, late_id);
        assert_eq!(check_key(&view, &hasher, parse(&late).unwrap(), 100).unwrap_err(), KeyRefusal::Expired);
        // Same id, another secret (a forged key for a known id, with a valid checksum).
        let forged = {
            let (k2, _) = generate().unwrap();
            let body = format!("pcs_{id}_{}", &k2[17..60]);
            let check = &crate::apikey::tests_support::checksum_of(&body);
            format!("{body}{check}")
        };
        assert_eq!(check_key(&view, &hasher, parse(&forged).unwrap(), 50).unwrap_err(), KeyRefusal::Mismatch);
        let _ = other_id;
    }

    #[test]
    fn a_record_never_holds_the_key() {
        let hasher = KeyHasher::new(&[1; 32]);
        let (key, id) = generate().unwrap();
        let json = serde_json::to_string(&record(&key, &id, &hasher, None)).unwrap();
        assert!(!json.contains(&key[17..60]));
        assert!(KeyEntry::new(ApiKeyRecord { hash: "zz".into(), ..record(&key, &id, &hasher, None) }).is_none());
    }
}
