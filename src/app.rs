//! Builds the Pingora server (proxy and admin services) from a validated config.

use arc_swap::ArcSwap;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::listening::Service;
use std::sync::Arc;

use crate::admin::AdminApp;
use crate::config::Config;
use crate::proxy::{Gateway, Snapshot};

/// Process-level switches from the command line.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunOptions {
    /// Take over the listening sockets of a running instance (zero-downtime upgrade).
    pub upgrade: bool,
    /// Detach into the background.
    pub daemon: bool,
}

/// The server, ready to `run`.
pub fn build_server(config: Config, opts: RunOptions) -> Server {
    let s = &config.server;
    let conf = ServerConf {
        threads: s.threads,
        daemon: opts.daemon,
        pid_file: s.pid_file.clone(),
        upgrade_sock: s.upgrade_sock.clone(),
        grace_period_seconds: Some(s.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    let (listen, admin_listen) = (s.listen.to_string(), s.admin_listen.to_string());

    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let state = Arc::new(ArcSwap::from_pointee(Snapshot::new(config)));
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(state),
        "portcullis proxy",
    );
    proxy.add_tcp(&listen);

    let mut admin = Service::new("portcullis admin".to_string(), AdminApp);
    admin.add_tcp(&admin_listen);
    admin.threads = Some(1);

    server.add_service(proxy);
    server.add_service(admin);
    server
}
