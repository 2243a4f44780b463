use super::*;
use std::time::Duration;

pub(crate) const SEED: &str = r#"
server:  { listen: "127.0.0.1:8080", admin_listen: "127.0.0.1:9901", threads: 2 }
store:   { backend: memory }
tokens:  { secret_env: JWT_SECRET_KEY, access_ttl_minutes: 15, refresh_ttl_days: 7, leeway_seconds: 0 }
roles:   { admin: 3, user: 2, viewer: 1, guest: 0 }
permissions:
  projects: { admin: [create, read, update, delete], user: [create, read, update], viewer: [read], guest: [] }
  settings: { admin: [read, update], user: [read], viewer: [], guest: [] }
upstreams:
  app: { url: "http://127.0.0.1:3000" }
routes:
  - { name: settings-update, path: /admin/settings, methods: [POST], require_role: admin, upstream: app }
  - { name: project-delete,  path: "/projects/{id}", methods: [DELETE], permission: "projects:delete", upstream: app }
  - { name: projects-read,   path: "/projects/**", methods: [GET], permission: "projects:read", upstream: app }
  - { name: profile,         path: /profile, require_role: guest, upstream: app }
  - { name: docs,            path: "/public/**", public: true, upstream: app }
"#;

pub(crate) const TEST_SECRET: &str = "test-secret-that-is-long-enough-0123456789";

pub(crate) fn env_with_secret(name: &str) -> Option<String> {
    (name == "JWT_SECRET_KEY").then(|| TEST_SECRET.to_string())
}

pub(crate) fn seed_config() -> Config {
    parse(SEED, Path::new("gateway.yaml"), &env_with_secret).unwrap()
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, Path::new("gw.yaml"), &env_with_secret) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn the_seed_config_is_valid() {
    let c = seed_config();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.threads, 2);
    assert_eq!(c.tokens.access_ttl, Duration::from_secs(900));
    assert_eq!(c.tokens.refresh_ttl, Duration::from_secs(7 * 86400));
    assert_eq!(c.policy.routes.routes().len(), 5);
    assert_eq!(c.upstreams.len(), 1);
    assert_eq!(c.policy.roles.level("viewer"), Some(1));
}

#[test]
fn the_shipped_gateway_yaml_is_valid() {
    let text = include_str!("../../gateway.yaml");
    if let Err(e) = parse(text, Path::new("gateway.yaml"), &env_with_secret) {
        panic!("{e}");
    }
}

#[test]
fn every_problem_is_reported_with_its_position() {
    let text = "\
server: { listen: \"127.0.0.1:8080\", thredas: 2 }
roles: { admin: 3, user: }
permissions:
  projects: { admin: [read], usr: [read] }
upstreams:
  app: { url: \"http://127.0.0.1:3000\" }
routes:
  - { name: a, path: /a, require_role: admn, upstream: app }
  - { name: b, path: /b, permission: \"projects:raed\", upstream: ap }
  - { name: c, path: /c, upstream: app }
  - { name: d, path: \"/d/**/e\", public: true, upstream: app }
limits: {}
";
    assert_eq!(
        errors(text),
        vec![
            "gw.yaml:1:37: server.thredas: unknown key `thredas` (did you mean `threads`?)",
            "gw.yaml:2:20: roles.user: role `user` has no level",
            "gw.yaml:4:30: permissions.projects.usr: role `usr` has no level: it is not defined under `roles`",
            "gw.yaml:8:40: routes[0].require_role: unknown role `admn` (did you mean `admin`?)",
            "gw.yaml:9:38: routes[1].permission: no role is granted `raed` on `projects` (did you mean `read`?)",
            "gw.yaml:9:65: routes[1].upstream: unknown upstream `ap` (did you mean `app`?)",
            "gw.yaml:10:5: routes[2]: a route must say exactly one of `public: true`, `require_role` or `permission`",
            "gw.yaml:11:22: routes[3].path: `**` may only be the last segment",
            "gw.yaml:12:1: limits: unknown key `limits`",
        ]
    );
}

/// A misspelt resource is named with the one the operator meant.
#[test]
fn an_unknown_resource_is_refused_with_a_suggestion() {
    let text = "\
roles: { admin: 3, user: 2 }
permissions:
  projects: { user: [read] }
upstreams:
  app: { url: \"http://127.0.0.1:3000\" }
routes:
  - { name: b, path: /b, permission: \"projcts:read\", upstream: app }
";
    let e = errors(text);
    assert!(e.iter().any(|l| l.contains("unknown resource `projcts` (not under `permissions`) (did you mean `projects`?)")), "{e:#?}");
}

#[test]
fn the_secret_must_be_set_and_long_enough() {
    let text = "tokens: { secret_env: MY_SECRET }\n";
    let unset = parse(text, Path::new("g.yaml"), &|_| None).err().unwrap().to_string();
    assert_eq!(unset, "g.yaml:1:23: tokens.secret_env: environment variable `MY_SECRET` is not set: it must hold the token signing secret (at least 32 bytes)");
    let short = parse(text, Path::new("g.yaml"), &|_| Some("short-secret-value".into())).err().unwrap().to_string();
    assert!(short.contains("shorter than 32 bytes"), "{short}");
    assert!(!short.contains("short-secret-value"), "the secret must never be echoed: {short}");
}

#[test]
fn environment_overrides_token_lifetimes() {
    let env = |n: &str| match n {
        "JWT_SECRET_KEY" => Some(TEST_SECRET.to_string()),
        "ACCESS_TOKEN_EXPIRE_MINUTES" => Some("5".into()),
        "REFRESH_TOKEN_EXPIRE_DAYS" => Some("2".into()),
        _ => None,
    };
    let c = parse(SEED, Path::new("g.yaml"), &env).unwrap();
    assert_eq!(c.tokens.access_ttl, Duration::from_secs(300));
    assert_eq!(c.tokens.refresh_ttl, Duration::from_secs(2 * 86400));
    let bad = |n: &str| {
        if n == "ACCESS_TOKEN_EXPIRE_MINUTES" {
            Some("soon".into())
        } else {
            env_with_secret(n)
        }
    };
    let e = parse(SEED, Path::new("g.yaml"), &bad).err().unwrap().to_string();
    assert!(e.contains("ACCESS_TOKEN_EXPIRE_MINUTES"), "{e}");
}

#[test]
fn the_verified_token_cache_is_bounded() {
    assert_eq!(
        errors("tokens: { verify_cache_size: 5000000 }\n"),
        vec!["gw.yaml:1:30: tokens.verify_cache_size: at most 1000000 verified tokens can be cached (0 turns the cache off)"]
    );
    assert!(errors("tokens: { verify_cache_size: 0 }\n").is_empty());
}

#[test]
fn values_are_never_echoed_in_type_errors() {
    let e = errors("tokens: { leeway_seconds: sekrit-value-123 }\n");
    assert_eq!(e, vec!["gw.yaml:1:27: tokens.leeway_seconds: expected u64, found a string"]);
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let e = errors("server:\n  listen: [unclosed\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("gw.yaml:"), "{e:?}");
    assert!(e[0].contains("invalid YAML"), "{e:?}");
}

#[test]
fn role_levels_must_be_distinct_and_routes_unique() {
    let text = "roles: { a: 1, b: 1 }\nupstreams: { app: { url: \"http://127.0.0.1:1\" } }\nroutes:\n  - { name: x, path: /x, public: true, upstream: app }\n  - { name: x, path: /y, public: true, upstream: app }\n";
    let e = errors(text);
    assert!(e.iter().any(|m| m.contains("have the same level 1")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("route name `x` is already used by routes[0]")), "{e:?}");
}

#[test]
fn upstream_urls_are_checked() {
    let text = "upstreams:\n  a: { url: \"ftp://x\" }\n  b: { url: \"http://u:p@127.0.0.1:1\" }\n  c: { url: \"http://127.0.0.1:1/base\" }\n  d: { url: \"https://127.0.0.1\" }\n";
    let e = errors(text);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(!e.iter().any(|m| m.contains("u:p")), "credentials must not be echoed: {e:?}");
}

#[test]
fn an_empty_file_takes_defaults_but_still_needs_the_secret() {
    assert!(parse("", Path::new("g.yaml"), &env_with_secret).is_ok());
    assert!(parse("", Path::new("g.yaml"), &|_| None).is_err());
}

#[test]
fn the_schema_describes_exactly_the_sections_the_validator_accepts() {
    let schema: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
    let mut props: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut sections = validate::SECTIONS.to_vec();
    props.sort();
    sections.sort();
    assert_eq!(props, sections);
    assert_eq!(schema["additionalProperties"], false);
    let server = &schema["$defs"]["RawServer"];
    assert!(server["properties"]["listen"].is_object(), "{server}");
    assert_eq!(server["additionalProperties"], false);
}

#[test]
fn the_schema_type_accepts_the_shipped_file() {
    let parsed: Result<raw::RawGatewayFile, _> = serde_yaml::from_str(include_str!("../../gateway.yaml"));
    assert!(parsed.is_ok(), "{parsed:?}");
}

#[test]
fn problems_in_the_users_file_are_located_in_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.yaml");
    std::fs::write(&users, "users:\n  - { id: \"1\", email: a@example.com, role: admn, password_hash: \"plaintext-secret\" }\n  - { id: \"1\", email: b@example.com, role: user, password_hash: x, extra: 1 }\n").unwrap();
    let main = dir.path().join("gateway.yaml");
    let text = format!("{SEED}users: {{ file: users.yaml }}\n");
    let e = parse(&text, &main, &env_with_secret).err().unwrap();
    let lines: Vec<String> = e.0.iter().map(|d| d.to_string()).collect();
    let u = users.display().to_string();
    assert!(lines.contains(&format!("{u}:2:44: users[0].role: unknown role `admn` (did you mean `admin`?)")), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{u}:2:")) && l.contains("users[0].password_hash: not an argon2 PHC string")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.starts_with(&format!("{u}:3:")) && l.contains("unknown key `extra`")), "{lines:#?}");
    assert!(!e.to_string().contains("plaintext-secret"), "a hash field is never echoed");
    let missing = parse(&format!("{SEED}users: {{ file: nope.yaml }}\n"), &main, &env_with_secret).err().unwrap().to_string();
    assert!(missing.contains("nope.yaml:1:1: cannot read the users file"), "{missing}");
}

#[test]
fn tls_files_and_chain_members_must_exist() {
    let text = format!(
        "{}providers:\n  p1: {{ url: \"http://127.0.0.1:1\" }}\nprovider_chains:\n  llm: {{ primary: p1, fallbacks: [p2, p1] }}\n",
        SEED.replace("threads: 2 }", "threads: 2, tls: { cert: /nonexistent/cert.pem, key: /nonexistent/key.pem } }")
    );
    let e = errors(&text);
    assert!(e.iter().any(|l| l.contains("server.tls.cert: cannot read `/nonexistent/cert.pem`")), "{e:#?}");
    assert!(e.iter().any(|l| l.contains("server.tls.key: cannot read")), "{e:#?}");
    assert!(e.iter().any(|l| l.contains("provider_chains.llm.fallbacks[0]: unknown provider `p2` (did you mean `p1`?)")), "{e:#?}");
    assert!(e.iter().any(|l| l.contains("provider_chains.llm.fallbacks[1]: provider `p1` appears twice")), "{e:#?}");
}

#[test]
fn redis_urls_are_printed_without_credentials() {
    let redis = crate::store::RedisSettings::standalone("redis://:hunter2@h:1");
    let printed = format!("{:?}", StoreSettings::Redis { redis, key_prefix: "p:".into() });
    assert!(!printed.contains("hunter2"), "{printed}");
    let sentinel = crate::store::RedisSettings {
        mode: crate::store::RedisMode::Sentinel { sentinels: vec!["h:26379".into()], master_name: "m".into(), db: 0 },
        username: Some("gw".into()),
        password: Some("hunter3".into()),
        tls: false,
    };
    let printed = format!("{sentinel:?}");
    assert!(!printed.contains("hunter3") && printed.contains("<redacted>"), "{printed}");
}

#[test]
fn redis_modes_are_read_and_checked_with_their_place() {
    let env = |n: &str| match n {
        "RP" => Some("pw".to_string()),
        other => env_with_secret(other),
    };
    let seed = SEED.replace("store:   { backend: memory }", "");
    let load = |store: &str| parse(&format!("{seed}store:\n{store}"), Path::new("gateway.yaml"), &env);
    let cfg = load("  backend: redis\n  redis:\n    mode: sentinel\n    sentinels: [\"127.0.0.1:26379\", \"127.0.0.1:26380\"]\n    master_name: portcullis\n    password_env: RP\n").unwrap();
    match cfg.store {
        StoreSettings::Redis { redis, .. } => {
            assert_eq!(
                redis.mode,
                crate::store::RedisMode::Sentinel {
                    sentinels: vec!["127.0.0.1:26379".into(), "127.0.0.1:26380".into()],
                    master_name: "portcullis".into(),
                    db: 0
                }
            );
            assert_eq!(redis.password.as_deref(), Some("pw"));
        }
        other => panic!("{other:?}"),
    }
    let cfg = load("  backend: redis\n  redis: { mode: cluster, nodes: [\"127.0.0.1:7000\"] }\n").unwrap();
    assert!(matches!(
        cfg.store,
        StoreSettings::Redis { redis: crate::store::RedisSettings { mode: crate::store::RedisMode::Cluster { .. }, .. }, .. }
    ));
    let cfg = load("  backend: redis\n  redis_url: \"redis://127.0.0.1:1/0\"\n").unwrap();
    assert!(matches!(
        cfg.store,
        StoreSettings::Redis { redis: crate::store::RedisSettings { mode: crate::store::RedisMode::Standalone { .. }, .. }, .. }
    ));

    let bad = |store: &str| match load(store) {
        Ok(_) => panic!("accepted: {store}"),
        Err(e) => e.to_string(),
    };
    let e = bad("  backend: redis\n  redis:\n    mode: sentinal\n");
    assert!(e.contains("store.redis.mode: unknown mode `sentinal`") && e.contains("did you mean `sentinel`"), "{e}");
    let e = bad("  backend: redis\n  redis:\n    mode: sentinel\n    sentinels: [\"127.0.0.1\"]\n");
    assert!(e.contains("store.redis.sentinels[0]: `127.0.0.1` is not `host:port`"), "{e}");
    assert!(e.contains("store.redis.master_name"), "{e}");
    let e = bad("  backend: redis\n  redis:\n    mode: cluster\n    password_env: NOT_SET_ANYWHERE\n");
    assert!(e.contains("store.redis.nodes: `mode: cluster` needs at least one `host:port`"), "{e}");
    assert!(e.contains("store.redis.password_env: the environment variable `NOT_SET_ANYWHERE` is not set"), "{e}");
    let e = bad("  backend: redis\n  redis_url: \"redis://h:1\"\n  redis: { mode: standalone, url: \"redis://h:1\" }\n");
    assert!(e.contains("not both"), "{e}");
    let e = bad("  backend: redis\n  redis: { mode: cluster, nodes: [\"h:1\"], master_name: x }\n");
    assert!(e.contains("store.redis.master_name: not used with `mode: cluster`"), "{e}");
    let e = bad("  backend: redis\n  key_prefix: \"{gw}:\"\n  redis_url: \"redis://h:1\"\n");
    assert!(e.contains("store.key_prefix: must not contain"), "{e}");
    assert!(!e.contains("pw"), "{e}");
}

#[test]
fn api_keys_client_certs_and_scopes_are_checked_with_their_place() {
    let text = format!(
        "{SEED}api_keys: {{ secret_env: SHORT_KEY_SECRET, max_per_user: 0 }}\nclient_certs: {{ map: {{ \"CN=x\": {{ user_id: x, role: emperor }} }} }}\n"
    );
    let env = |n: &str| match n {
        "SHORT_KEY_SECRET" => Some("too-short".to_string()),
        other => env_with_secret(other),
    };
    let e = parse(&text, Path::new("gw.yaml"), &env).err().unwrap();
    let lines: Vec<String> = e.0.iter().map(|d| d.to_string()).collect();
    let has = |needle: &str| lines.iter().any(|l| l.starts_with("gw.yaml:") && l.contains(needle));
    assert!(has("api_keys.secret_env: the secret in environment variable `SHORT_KEY_SECRET` is shorter than 32 bytes"), "{lines:#?}");
    assert!(has("client_certs.map.CN=x.role: unknown role `emperor`"), "{lines:#?}");
    assert!(has("api_keys.max_per_user: must be at least 1"), "{lines:#?}");
    assert!(has("client_certs: client certificates are only verified with `server.tls.client_auth`"), "{lines:#?}");
    let scoped = SEED.replace("require_role: guest, upstream: app }", "require_role: guest, upstream: app, require_scopes: [\"a b\"] }");
    assert!(errors(&scoped).iter().any(|l| l.contains("routes[3].require_scopes[0]")), "{:#?}", errors(&scoped));
    // Configured well, keys are enabled and the named limits are known.
    let good = format!("{SEED}api_keys: {{ secret_env: GOOD }}\nrate_limits: {{ routes: {{ ci: {{ requests: 5, per_seconds: 60 }} }} }}\n");
    let env = |n: &str| if n == "GOOD" { Some("k".repeat(32)) } else { env_with_secret(n) };
    let c = parse(&good, Path::new("gw.yaml"), &env).unwrap();
    assert!(c.api_keys.is_some_and(|k| !k.self_service && k.max_per_user == 100));
    assert!(c.named_limits.contains_key("ci"));
}

#[test]
fn llm_settings_are_checked_and_lowered() {
    let env = |k: &str| (k == "JWT_SECRET_KEY" || k == "K").then(|| "0123456789abcdef0123456789abcdef".to_string());
    let text = format!(
        "{SEED}providers: {{ a: {{ url: \"http://127.0.0.1:9\", api: anthropic, api_key_env: K, models: {{ smart: claude }} }}, b: {{ url: \"http://127.0.0.1:9\", api: gemini }} }}
llm_limits: {{ default: {{ tokens_per_minute: 0 }}, roles: {{ wizard: {{ unlimited: true }} }}, reserve_tokens: 0 }}
models_pricing: {{ smart: {{ prompt_per_million: -1, completion_per_million: 1 }} }}
"
    );
    let problems: String = match parse(&text, Path::new("gw.yaml"), &env) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"),
    };
    for expected in [
        "providers.b.api: unknown API `gemini`",
        "llm_limits.default: `tokens_per_minute` and `tokens_per_day` must be at least 1",
        "llm_limits.roles.wizard: unknown role `wizard`",
        "llm_limits.reserve_tokens: must be at least 1",
        "models_pricing.smart: prices must be numbers of at least 0",
    ] {
        assert!(problems.contains(expected), "missing {expected:?} in:\n{problems}");
    }
    let good = format!(
        "{SEED}providers: {{ a: {{ url: \"http://127.0.0.1:9\", api: anthropic, api_key_env: K, models: {{ smart: claude }} }} }}
llm_limits: {{ default: {{ tokens_per_minute: 100, tokens_per_day: 1000 }}, roles: {{ viewer: {{ tokens_per_day: 10 }}, admin: {{ unlimited: true }} }} }}
models_pricing: {{ smart: {{ prompt_per_million: 2.5, completion_per_million: 10 }} }}
"
    );
    let c = parse(&good, Path::new("gw.yaml"), &env).unwrap();
    let a = &c.providers[0];
    assert_eq!(a.api, crate::llm::Api::Anthropic);
    assert!(matches!(&a.auth, crate::providers::ProviderAuth::Header(h, _) if h == "x-api-key"), "Anthropic keys go in x-api-key");
    let rules = c.llm.budgets.clone().unwrap();
    assert_eq!(rules.reserve_tokens, 1024);
    assert_eq!(rules.limits(Some("viewer")).per_day, Some(10));
    assert_eq!(rules.limits(Some("viewer")).per_minute, Some(100), "a role's entry overlays the default");
    assert!(rules.limits(Some("admin")).unlimited);
    assert_eq!(c.llm.model_label(Some("smart")), "smart");
    assert_eq!(c.llm.model_label(Some("gpt-9")), "other", "labels stay within the config's names");
    assert!((c.llm.prices["smart"].cost(1_000_000, 100_000) - 3.5).abs() < 1e-9);
}

#[test]
fn half_open_trials_and_the_backoff_are_checked_with_their_place() {
    let e = errors(&format!(
        "{SEED}health: {{ unhealthy_seconds: 60, half_open_trials: 0, unhealthy_backoff: 0.5, max_unhealthy_seconds: 30 }}\n"
    ));
    for key in ["health.half_open_trials", "health.unhealthy_backoff", "health.max_unhealthy_seconds"] {
        assert!(e.iter().any(|l| l.starts_with("gw.yaml:") && l.contains(key)), "{key}: {e:?}");
    }
    assert!(errors(&format!("{SEED}health: {{ half_open_trials: 3, unhealthy_backoff: 1.5, max_unhealthy_seconds: 900 }}\n")).is_empty());
    let e = errors(&format!("{SEED}health: {{ half_open_trails: 3 }}\n"));
    assert!(e.iter().any(|l| l.contains("half_open_trials")), "did-you-mean: {e:?}");
}

#[test]
fn the_new_connection_rate_is_off_by_default_and_bounded() {
    let base = "roles: { admin: 1 }\nupstreams: { app: { url: \"http://127.0.0.1:3000\" } }\nroutes: [ { name: a, path: /a, public: true, upstream: app } ]\n";
    let ok = format!("server: {{ max_new_connections_per_ip_per_second: 50 }}\n{base}");
    assert_eq!(parse(&ok, Path::new("gw.yaml"), &env_with_secret).unwrap().server.max_new_connections_per_ip_per_second, 50);
    assert_eq!(parse(base, Path::new("gw.yaml"), &env_with_secret).unwrap().server.max_new_connections_per_ip_per_second, 0);
    let too_many = format!("server: {{ max_new_connections_per_ip_per_second: 1000000 }}\n{base}");
    assert_eq!(
        errors(&too_many),
        vec!["gw.yaml:1:50: server.max_new_connections_per_ip_per_second: must be at most 100000 (0 turns the limit off)"]
    );
}
