//! The command line: check, token, run's refusal, version.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::TEST_SECRET;
use portcullis::auth::TokenKind;
use std::process::{Command, Output};

fn portcullis(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(args).env_remove("JWT_SECRET_KEY").env_remove("ACCESS_TOKEN_EXPIRE_MINUTES").env_remove("REFRESH_TOKEN_EXPIRE_DAYS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run portcullis")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const SECRET_ENV: [(&str, &str); 1] = [("JWT_SECRET_KEY", TEST_SECRET)];

fn shipped() -> String {
    format!("{}/gateway.yaml", env!("CARGO_MANIFEST_DIR"))
}

const BROKEN: &str = "\
server: { listen: \"127.0.0.1:8080\", thredas: 2 }
roles: { admin: 3, user: 2 }
upstreams:
  app: { url: \"http://127.0.0.1:3000\" }
routes:
  - { name: a, path: /a, require_role: admn, upstream: app }
  - { name: b, path: /b, public: true, upstream: ap }
";

#[test]
fn check_accepts_the_shipped_config() {
    let out = portcullis(&["check", "-c", &shipped()], &SECRET_ENV);
    assert_eq!(text(&out.stdout).trim(), "ok", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn check_prints_every_problem_with_file_line_and_column_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, BROKEN).unwrap();
    let p = path.display().to_string();
    let out = portcullis(&["check", "-c", &p], &SECRET_ENV);
    assert_eq!(out.status.code(), Some(2));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        vec![
            format!("{p}:1:37: server.thredas: unknown key `thredas` (did you mean `threads`?)"),
            format!("{p}:6:40: routes[0].require_role: unknown role `admn` (did you mean `admin`?)"),
            format!("{p}:7:50: routes[1].upstream: unknown upstream `ap` (did you mean `app`?)"),
        ]
    );
}

#[test]
fn a_missing_or_short_secret_is_a_config_error() {
    let out = portcullis(&["check", "-c", &shipped()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("environment variable `JWT_SECRET_KEY` is not set"), "{}", text(&out.stdout));
    let out = portcullis(&["check", "-c", &shipped()], &[("JWT_SECRET_KEY", "too-short-secret")]);
    assert_eq!(out.status.code(), Some(2));
    let printed = text(&out.stdout);
    assert!(printed.contains("shorter than 32 bytes") && !printed.contains("too-short-secret"), "{printed}");
}

#[test]
fn run_refuses_a_broken_config_with_the_same_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, BROKEN).unwrap();
    let p = path.display().to_string();
    let check = text(&portcullis(&["check", "-c", &p], &SECRET_ENV).stdout);
    let out = portcullis(&["run", "-c", &p], &SECRET_ENV);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for line in check.lines() {
        assert!(stderr.contains(line), "run should print {line:?}; got {stderr}");
    }
    let out = portcullis(&["run", "-c", &shipped()], &[]);
    assert_eq!(out.status.code(), Some(2), "run refuses to start without a secret");
}

#[test]
fn token_prints_a_verifiable_token_of_the_asked_type_and_lifetime() {
    let out = portcullis(&["token", "-c", &shipped(), "--user-id", "7", "--role", "admin", "--ttl-seconds", "120"], &SECRET_ENV);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_string();
    let config = portcullis::config::parse(&std::fs::read_to_string(shipped()).unwrap(), std::path::Path::new("g"), &|n| {
        (n == "JWT_SECRET_KEY").then(|| TEST_SECRET.into())
    })
    .unwrap();
    let m = portcullis::auth::TokenManager::new(&config.tokens);
    let claims = m.verify(&token, TokenKind::Access).unwrap();
    assert_eq!((claims.user_id.as_str(), claims.role.as_deref(), claims.exp - claims.iat), ("7", Some("admin"), 120));

    let out = portcullis(&["token", "-c", &shipped(), "--user-id", "7", "--type", "refresh"], &SECRET_ENV);
    let refresh = text(&out.stdout).trim().to_string();
    let claims = m.verify(&refresh, TokenKind::Refresh).unwrap();
    assert_eq!(claims.exp - claims.iat, 7 * 86400);
    assert!(m.verify(&refresh, TokenKind::Access).is_err());

    let out = portcullis(&["token", "-c", &shipped(), "--user-id", "7"], &SECRET_ENV);
    assert_eq!(out.status.code(), Some(2), "an access token needs a role");
}

#[test]
fn version_and_help_explain_themselves() {
    let out = portcullis(&["--version"], &[]);
    assert_eq!(text(&out.stdout).trim(), format!("portcullis {}", env!("CARGO_PKG_VERSION")));
    let out = portcullis(&["--help"], &[]);
    let help = text(&out.stdout);
    for word in ["run", "check", "token"] {
        assert!(help.contains(word), "{help}");
    }
}
