//! A typed builder for test configs: start from the seed config, change it by key path, get the
//! YAML text. Edits name the setting they change (`server.threads`, `upstreams.app.tls_verify`,
//! a route by name), so a test never depends on how the seed text happens to be spelled.

use serde_yaml::{Mapping, Value};

/// A gateway.yaml under construction.
#[derive(Clone)]
pub struct Config {
    doc: Value,
}

impl Config {
    /// The seed config (see [`super::SEED_CONFIG`]) with its app upstream at `upstream`.
    pub fn seed(upstream: &str) -> Self {
        Config::from_yaml(&super::seed_config(upstream))
    }

    /// Any config text (harness placeholders such as `@LISTEN@` are kept as they are).
    pub fn from_yaml(text: &str) -> Self {
        Config { doc: serde_yaml::from_str(text).expect("the test config is YAML") }
    }

    /// Sets the value at a dotted key path (`server.max_header_bytes`), creating mappings on the
    /// way; `value` is YAML (`4096`, `true`, `"[\"127.0.0.1\"]"`, `{ requests: 2, per_seconds: 60 }`).
    pub fn set(mut self, path: &str, value: &str) -> Self {
        let value: Value = serde_yaml::from_str(value).expect("the value is YAML");
        let mut at = &mut self.doc;
        for key in path.split('.') {
            if !at.is_mapping() {
                *at = Value::Mapping(Mapping::new());
            }
            let map = at.as_mapping_mut().expect("a mapping");
            at = map.entry(Value::from(key)).or_insert(Value::Null);
        }
        *at = value;
        self
    }

    /// Sets one key of the route named `route`.
    pub fn route(mut self, route: &str, key: &str, value: &str) -> Self {
        let value: Value = serde_yaml::from_str(value).expect("the value is YAML");
        let routes = self.doc.get_mut("routes").and_then(Value::as_sequence_mut).expect("routes");
        let r = routes.iter_mut().find(|r| r.get("name").and_then(Value::as_str) == Some(route)).expect("a route of that name");
        r.as_mapping_mut().expect("a route mapping").insert(Value::from(key), value);
        self
    }

    /// Adds a route (YAML mapping) after the others.
    pub fn add_route(mut self, route: &str) -> Self {
        let route: Value = serde_yaml::from_str(route).expect("the route is YAML");
        self.doc.get_mut("routes").and_then(Value::as_sequence_mut).expect("routes").push(route);
        self
    }

    /// The store section for a Redis server at `url`.
    pub fn redis(self, url: &str) -> Self {
        self.set("store", &format!("{{ backend: redis, redis_url: \"{url}\" }}"))
    }

    /// The YAML text.
    pub fn yaml(&self) -> String {
        serde_yaml::to_string(&self.doc).expect("serializable")
    }
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.yaml())
    }
}
