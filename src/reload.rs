//! Hot reload of gateway.yaml: on SIGHUP or when the file (or the users file) changes, parse and
//! validate, then swap the whole snapshot atomically. Requests in flight keep the snapshot they
//! started with. A broken file is refused with the same messages as `portcullis check` and the
//! running configuration stays in force.
//!
//! Settings that need a restart (listeners, threads, store, sessions, passwords, metrics,
//! logging) are reported when they change, and keep their running values.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{Audit, AuditSettings, Event, Origin};
use crate::auth::passwords::PasswordSettings;
use crate::auth::sessions::SessionSettings;
use crate::config::{self, Config, ServerSettings};
use crate::logging::LoggingSettings;
use crate::metrics::Metrics;
use crate::providers::tracker::Tracker;
use crate::proxy::{Guards, Snapshot, SnapshotParts};
use crate::store::StoreSettings;

/// Every `config_reloads_total{result}` value.
pub const RESULTS: [&str; 2] = ["success", "error"];

/// The request-path view of a validated config (what a reload swaps in).
pub fn snapshot(c: Config, metrics: Option<&Metrics>) -> Snapshot {
    let parts = SnapshotParts {
        policy: c.policy,
        tokens: c.tokens,
        upstreams: c.upstreams,
        file_users: c.users.file_users,
        guards: Guards {
            trusted_proxies: c.server.trusted_proxies,
            max_header_bytes: c.server.max_header_bytes,
            max_header_count: c.server.max_header_count,
            cors: c.cors,
            rate_limits: c.rate_limits,
            lockout: c.lockout,
        },
        providers: c.providers,
        chains: c.chains,
        api_keys: c.api_keys,
        client_certs: c.client_certs,
        named_limits: c.named_limits,
        identity_providers: c.identity_providers,
        llm: c.llm,
    };
    Snapshot::new(parts, metrics)
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new config is in force; these restart-only settings changed but were not applied.
    Applied { needs_restart: Vec<&'static str> },
    /// The file was refused; the old config stays. Each line is `FILE:LINE:COL: message`.
    Refused(Vec<String>),
}

/// The settings that only take effect at start.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartOnly {
    server: ServerSettings,
    store: StoreSettings,
    sessions: SessionSettings,
    passwords: PasswordSettings,
    metrics_enabled: bool,
    logging: LoggingSettings,
    audit: AuditSettings,
}

impl RestartOnly {
    /// The restart-only part of a config.
    pub fn of(c: &Config) -> Self {
        RestartOnly {
            server: c.server.clone(),
            store: c.store.clone(),
            sessions: c.sessions.clone(),
            passwords: c.passwords.clone(),
            metrics_enabled: c.metrics_enabled,
            logging: c.logging.clone(),
            audit: c.audit.clone(),
        }
    }

    /// The keys whose values differ in `new`.
    pub fn changes(&self, new: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.server, &new.server);
        let checks: [(&'static str, bool); 19] = [
            ("server.header_timeout_ms", a.header_timeout != b.header_timeout),
            ("server.max_connections", a.max_connections != b.max_connections),
            ("server.max_connections_per_ip", a.max_connections_per_ip != b.max_connections_per_ip),
            (
                "server.max_new_connections_per_ip_per_second",
                a.max_new_connections_per_ip_per_second != b.max_new_connections_per_ip_per_second,
            ),
            ("server.tls", a.tls != b.tls),
            ("audit", self.audit != new.audit),
            ("server.listen", a.listen != b.listen),
            ("server.admin_listen", a.admin_listen != b.admin_listen),
            ("server.threads", a.threads != b.threads),
            ("server.grace_period_seconds", a.grace_period_seconds != b.grace_period_seconds),
            ("server.graceful_shutdown_timeout_seconds", a.graceful_shutdown_timeout_seconds != b.graceful_shutdown_timeout_seconds),
            ("server.pid_file", a.pid_file != b.pid_file),
            ("server.upgrade_sock", a.upgrade_sock != b.upgrade_sock),
            ("server.upstream_keepalive_pool_size", a.upstream_keepalive_pool_size != b.upstream_keepalive_pool_size),
            ("store", self.store != new.store),
            ("sessions", self.sessions != new.sessions),
            ("passwords", self.passwords != new.passwords),
            ("metrics", self.metrics_enabled != new.metrics_enabled),
            ("logging", self.logging != new.logging),
        ];
        checks.into_iter().filter(|(_, changed)| *changed).map(|(k, _)| k).collect()
    }
}

/// Watches the config and swaps snapshots.
pub struct Reloader {
    path: PathBuf,
    state: Arc<ArcSwap<Snapshot>>,
    metrics: Option<Arc<Metrics>>,
    running: RestartOnly,
    audit: Option<Audit>,
    tracker: Option<Arc<Tracker>>,
    /// Files whose content is watched: the config and, if any, the users file.
    watched: Vec<PathBuf>,
}

impl Reloader {
    /// A reloader for the config at `path`, currently running `config`.
    pub fn new(
        path: PathBuf,
        running: RestartOnly,
        state: Arc<ArcSwap<Snapshot>>,
        metrics: Option<Arc<Metrics>>,
        audit: Option<Audit>,
    ) -> Self {
        let watched = watched_files(&path);
        Reloader { path, state, metrics, running, audit, tracker: None, watched }
    }

    /// Also hands new health rules to the provider tracker on reload.
    pub fn with_tracker(mut self, tracker: Arc<Tracker>) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// Loads, validates and (if good) swaps in the config file now.
    pub fn reload(&self, why: &str) -> Outcome {
        let outcome = match config::load(&self.path) {
            Ok(new) => {
                let needs_restart = self.running.changes(&new);
                if let Some(t) = &self.tracker {
                    t.set_rules(new.health);
                }
                self.state.store(Arc::new(snapshot(new, self.metrics.as_deref())));
                Outcome::Applied { needs_restart }
            }
            Err(errors) => Outcome::Refused(errors.0.iter().map(|d| d.to_string()).collect()),
        };
        match &outcome {
            Outcome::Applied { needs_restart } => {
                tracing::info!(trigger = why, "config reloaded");
                for key in needs_restart {
                    tracing::warn!(setting = key, "changed in the config but needs a restart to take effect; the running value stays");
                }
            }
            Outcome::Refused(lines) => {
                for line in lines {
                    tracing::error!("{line}");
                }
                tracing::error!(trigger = why, problems = lines.len(), "config reload refused; the running config stays in force");
            }
        }
        let applied = matches!(outcome, Outcome::Applied { .. });
        if let Some(m) = &self.metrics {
            m.ops.config_reload(if applied { "success" } else { "error" });
        }
        if let Some(a) = &self.audit {
            let details = match &outcome {
                Outcome::Applied { needs_restart } => serde_json::json!({ "trigger": why, "needs_restart": needs_restart }),
                Outcome::Refused(lines) => serde_json::json!({ "trigger": why, "problems": lines.len() }),
            };
            a.emit(Event::new("config.reload", if applied { "success" } else { "failure" }, None, Origin::default(), details));
        }
        outcome
    }

    /// A hash of every watched file's content (missing files included as such).
    fn fingerprint(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        for f in &self.watched {
            std::fs::read(f).ok().hash(&mut h);
        }
        h.finish()
    }
}

fn watched_files(path: &std::path::Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    // The users file is named inside the config; watch it too if the config names one.
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(&text) {
            if let Some(file) = v.get("users").and_then(|u| u.get("file")).and_then(|f| f.as_str()) {
                files.push(path.parent().unwrap_or(std::path::Path::new(".")).join(file));
            }
        }
    }
    files
}

#[async_trait]
impl BackgroundService for Reloader {
    /// Reloads on SIGHUP and whenever a watched file's content changes (checked every second).
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload on file change only");
                None
            }
        };
        let mut seen = self.fingerprint();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let signalled = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = signalled => {
                    self.reload("SIGHUP");
                    seen = self.fingerprint();
                }
                _ = tick.tick() => {
                    let now = self.fingerprint();
                    if now != seen {
                        seen = now;
                        self.reload("file change");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
