//! Builds the Pingora server from a validated config: the proxy and admin listeners and the
//! background services (session sync, rate-limit sync, provider health sync and probes, config
//! reload, audit writer). Each store role is handed to the one service that needs it.

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use std::sync::Arc;
use thiserror::Error;

use crate::admission::{KEY_REASONS, REVOKED};
use crate::audit::{self, AuditWriter};
use crate::auth::api::LOGIN_RESULTS;
use crate::auth::credentials::Credentials;
use crate::auth::issuers::Issuers;
use crate::auth::passwords::{PasswordError, Passwords};
use crate::auth::sessions::Sessions;
use crate::auth::TokenError;
use crate::config::{Config, TlsListen};
use crate::listener::{AcceptFilter, ConnCaps, ConnLimits, Guarded};
use crate::metrics::{Known, Metrics};
use crate::ops::AdminApp;
use crate::providers::probes::Probes;
use crate::providers::tracker::Tracker;
use crate::proxy::{Gateway, Services, Snapshot};
use crate::ratelimit::Limiter;
use crate::reload::{self, Reloader, RestartOnly};
use crate::store::{self, StoreError};
use pingora::connectors::http::Connector;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::ssl::{SslFiletype, SslVerifyMode, SslVersion};
use pingora::tls::x509::{X509Name, X509VerifyResult};

use crate::clientcert::ClientCert;

/// Process-level switches from the command line.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunOptions {
    /// Take over the listening sockets of a running instance (zero-downtime upgrade).
    pub upgrade: bool,
    /// Detach into the background.
    pub daemon: bool,
}

/// Why the server could not be built.
#[derive(Debug, Error)]
pub enum BuildError {
    #[error("cannot set up the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot set up password hashing: {0}")]
    Passwords(#[from] PasswordError),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

/// Keeps the local revocation view in step with the store (a Pingora background service, so its
/// Redis connections live on its own runtime).
struct SessionSync(Arc<Sessions>);

#[async_trait]
impl BackgroundService for SessionSync {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.sync_forever(shutdown).await;
    }
}

/// Keeps the local views of API keys and the denylist in step with the store.
struct CredentialSync(Arc<Credentials>);

#[async_trait]
impl BackgroundService for CredentialSync {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.sync_forever(shutdown).await;
    }
}

/// Keeps external identity providers' keys fresh and in step with the config.
struct IssuerSync {
    issuers: Arc<Issuers>,
    state: Arc<ArcSwap<Snapshot>>,
}

#[async_trait]
impl BackgroundService for IssuerSync {
    async fn start(&self, shutdown: ShutdownWatch) {
        let state = self.state.clone();
        self.issuers.run(move || state.load().identity_providers.clone(), shutdown).await;
    }
}

/// Pushes API rate-limit counts to the shared store and learns other instances' counts.
struct LimitSync(Arc<Limiter>);

#[async_trait]
impl BackgroundService for LimitSync {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.sync_forever(std::time::Duration::from_millis(100), shutdown).await;
    }
}

/// Keeps the local provider health view in step with the store.
struct ProviderSync {
    tracker: Arc<Tracker>,
    state: Arc<ArcSwap<Snapshot>>,
}

#[async_trait]
impl BackgroundService for ProviderSync {
    async fn start(&self, shutdown: ShutdownWatch) {
        let state = self.state.clone();
        let names = move || {
            let names: Vec<String> = state.load().providers.providers.iter().map(|p| p.name.clone()).collect();
            async move { names }
        };
        self.tracker.sync_forever(names, shutdown).await;
    }
}

/// Active provider health checks.
struct ProbeService(Probes);

#[async_trait]
impl BackgroundService for ProbeService {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.run(shutdown).await;
    }
}

/// Drains the audit queue into its sink.
struct AuditSink(AuditWriter);

#[async_trait]
impl BackgroundService for AuditSink {
    async fn start(&self, shutdown: ShutdownWatch) {
        self.0.run(shutdown).await;
    }
}

/// The notAfter of the first certificate in a PEM file, as unix seconds.
fn cert_not_after(path: &str) -> Option<i64> {
    let pem = std::fs::read(path).ok()?;
    let cert = pingora::tls::x509::X509::from_pem(&pem).ok()?;
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(cert.not_after()).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

/// TLS settings for the proxy listener: Mozilla intermediate, TLS 1.3 only unless 1.2 is
/// allowed, HTTP/2 offered through ALPN; with `client_auth`, client certificates verified
/// against its CA during the handshake (required, or only when sent).
fn tls_settings(t: &TlsListen) -> Result<TlsSettings, BuildError> {
    let tls_err = |e: &dyn std::fmt::Display| BuildError::Tls(e.to_string());
    let mut settings = match &t.client_auth {
        None => TlsSettings::intermediate(&t.cert, &t.key).map_err(|e| tls_err(&e))?,
        Some(_) => {
            let mut s = TlsSettings::with_callbacks(Box::new(ClientCertCapture)).map_err(|e| tls_err(&e))?;
            s.set_private_key_file(&t.key, SslFiletype::PEM).map_err(|e| tls_err(&e))?;
            s.set_certificate_chain_file(&t.cert).map_err(|e| tls_err(&e))?;
            s.check_private_key().map_err(|e| tls_err(&e))?;
            s
        }
    };
    if let Some(auth) = &t.client_auth {
        settings.set_ca_file(&auth.ca).map_err(|e| tls_err(&e))?;
        settings.set_client_ca_list(X509Name::load_client_ca_file(&auth.ca).map_err(|e| tls_err(&e))?);
        let mode = if auth.required { SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT } else { SslVerifyMode::PEER };
        settings.set_verify(mode);
    }
    let min = if t.tls13_only { SslVersion::TLS1_3 } else { SslVersion::TLS1_2 };
    settings.set_min_proto_version(Some(min)).map_err(|e| tls_err(&e))?;
    settings.enable_h2();
    Ok(settings)
}

/// Hands a verified client certificate (subject and SAN URIs) to the request phases, through
/// the extension Pingora keeps in each connection's TLS digest.
struct ClientCertCapture;

#[async_trait]
impl TlsAccept for ClientCertCapture {
    async fn handshake_complete_callback(&self, ssl: &TlsRef) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        if ssl.verify_result() != X509VerifyResult::OK {
            return None;
        }
        let cert = ssl.peer_certificate()?;
        // RFC 4514 order: the most specific attribute (CN) first.
        let mut rdns: Vec<String> = cert
            .subject_name()
            .entries()
            .map(|e| {
                let name = e.object().nid().short_name().unwrap_or("?");
                let value = e.data().to_string().unwrap_or_default();
                format!("{name}={}", value.replace(',', "\\,"))
            })
            .collect();
        rdns.reverse();
        let uris =
            cert.subject_alt_names().map(|names| names.iter().filter_map(|n| n.uri().map(str::to_string)).collect()).unwrap_or_default();
        Some(Arc::new(ClientCert { subject: rdns.join(","), uris }))
    }
}

/// The server, ready to `run`.
pub fn build_server(config: Config, opts: RunOptions) -> Result<Server, BuildError> {
    let s = &config.server;
    let conf = ServerConf {
        threads: s.threads,
        daemon: opts.daemon,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        grace_period_seconds: Some(s.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        // Upstream timeouts on tokio's per-runtime timer wheel rather than Pingora's shared
        // fast-timer map: 1.5k fewer instructions per proxied request (bench/callgrind.sh), and
        // a cancelled timer is freed at once instead of being kept until its deadline.
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    };
    let opt = Opt { upgrade: opts.upgrade, daemon: opts.daemon, ..Opt::default() };
    let (listen, admin_listen) = (s.listen.to_string(), s.admin_listen.to_string());

    let metrics = config.metrics_enabled.then(Metrics::new);
    if let Some(m) = &metrics {
        let mut reasons = TokenError::REASONS.to_vec();
        reasons.push(REVOKED);
        reasons.extend(KEY_REASONS);
        m.declare(Known::AuthFailures, &reasons);
        let mut outcomes = vec!["accepted", "denied", REVOKED];
        outcomes.extend(KEY_REASONS);
        m.declare(Known::ApiKeyRequests, &outcomes);
        m.declare(Known::Logins, &LOGIN_RESULTS);
        m.declare(Known::ConfigReloads, &reload::RESULTS);
        m.declare(Known::StoreErrors, &["api", "sync", "credentials"]);
        m.declare(Known::AuthFailuresByIpClass, &["loopback", "private", "public"]);
        m.declare(Known::ConnectionsRefused, &["total", "per_ip"]);
    }
    let store = store::open(&config.store)?;
    let sessions = Arc::new(Sessions::new(store.clone(), config.sessions.clone()).with_metrics(metrics.clone()));
    let credentials = Arc::new(Credentials::new(store.clone(), metrics.clone()));
    let passwords = Arc::new(Passwords::new(&config.passwords)?);
    let limiter = Arc::new(Limiter::new(store.clone()));
    let (audit, audit_writer) = match audit::pipeline(&config.audit, metrics.clone()) {
        Some((a, w)) => (Some(a), Some(w)),
        None => (None, None),
    };
    let tracker = Arc::new(Tracker::new(store.clone(), config.health, metrics.clone()));
    let connector = Arc::new(Connector::new(None));
    let issuers = Arc::new(Issuers::new(connector.clone(), metrics.clone()).with_store(store.clone()));
    issuers.configure(&config.identity_providers);
    let services = Arc::new(Services {
        sessions: sessions.clone(),
        credentials: credentials.clone(),
        issuers: issuers.clone(),
        users: store.clone(),
        passwords,
        metrics: metrics.clone(),
        limiter: limiter.clone(),
        audit: audit.clone(),
        tracker: tracker.clone(),
        connector: connector.clone(),
        budgets: Arc::new(crate::providers::budget::Budgets::new(
            store.clone(),
            config.sessions.on_store_outage == crate::auth::sessions::OutageMode::Deny,
        )),
    });
    let tls = config.server.tls.clone();
    if let (Some(t), Some(m)) = (&tls, &metrics) {
        if let Some(not_after) = cert_not_after(&t.cert) {
            m.tls_cert_expires_at(not_after);
        }
    }

    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let limits = ConnLimits::new(ConnCaps {
        total: config.server.max_connections,
        per_ip: config.server.max_connections_per_ip,
        new_per_ip_per_second: config.server.max_new_connections_per_ip_per_second,
    });
    let (header_timeout, max_header_bytes) = (config.server.header_timeout, config.server.max_header_bytes);
    let (config_path, running) = (config.source.clone(), RestartOnly::of(&config));
    let state: Arc<ArcSwap<Snapshot>> = Arc::new(ArcSwap::from_pointee(reload::snapshot(config, metrics.as_deref())));
    let reloader = Reloader::new(config_path, running, state.clone(), metrics.clone(), audit).with_tracker(tracker.clone());
    // Pingora's HTTP app behind the connection caps and the header deadline (listener.rs).
    let guarded = Guarded {
        inner: Arc::new(pingora::proxy::http_proxy(&server.configuration, Gateway::new(state.clone(), services))),
        limits: limits.clone(),
        header_timeout,
        max_header_bytes,
        metrics: metrics.clone(),
    };
    let mut proxy = Service::new("portcullis proxy".to_string(), guarded);
    proxy.set_connection_filter(Arc::new(AcceptFilter { limits, metrics: metrics.clone() }));
    match &tls {
        Some(t) => proxy.add_tls_with_settings(&listen, None, tls_settings(t)?),
        None => proxy.add_tcp(&listen),
    }

    let mut admin =
        Service::new("portcullis admin".to_string(), AdminApp { sessions: sessions.clone(), metrics, issuers: issuers.clone() });
    admin.add_tcp(&admin_listen);
    admin.threads = Some(1);

    let mut sync = background_service("session sync", SessionSync(sessions));
    sync.threads = Some(1);

    server.add_service(proxy);
    server.add_service(admin);
    let mut reload = background_service("config reload", reloader);
    reload.threads = Some(1);

    let mut limits = background_service("rate-limit sync", LimitSync(limiter));
    limits.threads = Some(1);

    server.add_service(sync);
    let mut credential_sync = background_service("credential sync", CredentialSync(credentials));
    credential_sync.threads = Some(1);
    server.add_service(credential_sync);
    server.add_service(reload);
    server.add_service(limits);
    let mut provider_sync = background_service("provider health sync", ProviderSync { tracker: tracker.clone(), state: state.clone() });
    provider_sync.threads = Some(1);
    server.add_service(provider_sync);
    let mut issuer_sync = background_service("identity provider keys", IssuerSync { issuers: issuers.clone(), state: state.clone() });
    issuer_sync.threads = Some(1);
    server.add_service(issuer_sync);
    let providers = state.clone();
    let probes = Probes {
        tracker,
        providers: Box::new(move || providers.load().providers.clone()),
        connector,
        store,
        instance: crate::ids::new_id(),
    };
    let mut probes = background_service("provider probes", ProbeService(probes));
    probes.threads = Some(1);
    server.add_service(probes);
    if let Some(writer) = audit_writer {
        let mut w = background_service("audit writer", AuditSink(writer));
        w.threads = Some(1);
        server.add_service(w);
    }
    Ok(server)
}
