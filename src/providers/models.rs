//! Public model names on provider chains: which provider offers which model under which name
//! (`providers.NAME.models`), who may use which model (the `models` resource of `permissions`),
//! and the request body's `model` rewritten for each provider. Pure.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Who may use which model: the `models` resource of the permission matrix, hierarchy applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelAccess {
    /// model -> the lowest role level granted it.
    by_model: HashMap<String, u32>,
    /// The lowest role level granted `*` (every model).
    any: Option<u32>,
}

impl ModelAccess {
    /// From (action, lowest level granted) pairs of the `models` resource.
    pub fn new(grants: impl IntoIterator<Item = (String, Option<u32>)>) -> Self {
        let mut access = ModelAccess::default();
        for (action, level) in grants {
            let Some(level) = level else { continue };
            if action == "*" {
                access.any = Some(level);
            } else {
                access.by_model.insert(action, level);
            }
        }
        access
    }

    /// Every model named (and `*` if granted).
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.by_model.keys().map(String::as_str).chain(self.any.map(|_| "*"))
    }

    /// Whether a caller whose role has `level` (None: unknown role) may use `model`.
    pub fn allows(&self, model: &str, level: Option<u32>) -> bool {
        let Some(level) = level else { return false };
        self.any.is_some_and(|m| level >= m) || self.by_model.get(model).is_some_and(|m| level >= *m)
    }
}

/// The `model` a JSON request body names, if it is a JSON object with a string `model`.
pub fn requested_model(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct M {
        model: Option<Value>,
    }
    match serde_json::from_slice::<M>(body).ok()?.model? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// The body with its `model` replaced (None if it is not a JSON object).
pub fn with_model(body: &[u8], model: &str) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    v.as_object_mut()?.insert("model".into(), Value::String(model.to_string()));
    serde_json::to_vec(&v).ok()
}

/// The public models a chain offers: every name in its providers' maps. Empty when no provider
/// of the chain has a map (then model names pass through).
pub fn offered<'a>(maps: impl IntoIterator<Item = Option<&'a BTreeMap<String, String>>>) -> BTreeSet<String> {
    maps.into_iter().flatten().flat_map(|m| m.keys().cloned()).collect()
}

/// What one provider receives for the public model `model`: its own name for it, the same name
/// (a provider without a map), or None (it does not offer it: skipped for this request).
pub fn provider_model<'a>(map: Option<&'a BTreeMap<String, String>>, model: &'a str) -> Option<&'a str> {
    match map {
        None => Some(model),
        Some(m) => m.get(model).map(String::as_str),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_follows_the_hierarchy_and_the_wildcard() {
        // admin: [*] (3), user: [smart, fast] (2), viewer: [fast] (1): lowest level per model.
        let a = ModelAccess::new([("*".to_string(), Some(3)), ("smart".to_string(), Some(2)), ("fast".to_string(), Some(1))]);
        assert!(a.allows("fast", Some(1)) && a.allows("fast", Some(2)));
        assert!(!a.allows("smart", Some(1)) && a.allows("smart", Some(2)));
        assert!(a.allows("anything", Some(3)) && !a.allows("anything", Some(2)));
        assert!(!a.allows("fast", None) && !a.allows("fast", Some(0)));
        let mut named: Vec<&str> = a.models().collect();
        named.sort_unstable();
        assert_eq!(named, ["*", "fast", "smart"], "every model a grant names (metric labels come from them)");
        let nobody = ModelAccess::new([("x".to_string(), None)]);
        assert!(!nobody.allows("x", Some(9)));
    }

    #[test]
    fn bodies_name_and_get_their_model() {
        assert_eq!(requested_model(br#"{"model":"smart","messages":[]}"#).as_deref(), Some("smart"));
        assert_eq!(requested_model(br#"{"model":7}"#), None);
        assert_eq!(requested_model(b"not json"), None);
        let out = with_model(br#"{"model":"smart","stream":true}"#, "gpt-4o").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((v["model"].as_str(), v["stream"].as_bool()), (Some("gpt-4o"), Some(true)));
        assert_eq!(with_model(b"[1]", "x"), None);
        let map: BTreeMap<String, String> = [("smart".to_string(), "gpt-4o".to_string())].into();
        assert_eq!(provider_model(Some(&map), "smart"), Some("gpt-4o"));
        assert_eq!(provider_model(Some(&map), "fast"), None);
        assert_eq!(provider_model(None, "fast"), Some("fast"));
        assert_eq!(offered([Some(&map), None]).into_iter().collect::<Vec<_>>(), vec!["smart"]);
    }
}
