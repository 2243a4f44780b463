//! Portcullis: a reverse-proxy auth gateway on Pingora.
//!
//! Requests are normalized, routed, authenticated (JWT) and authorized (roles and a permission
//! matrix from gateway.yaml) before anything is forwarded upstream.
//!
//! The modules are layered, bottom to top: a module imports only from layers below its own
//! (`scripts/modgraph` checks it, and the module map in docs/development.md explains each one).

// Leaves: pure, no I/O, no other module of ours.
pub mod apikey;
pub mod browser;
pub mod clientcert;
pub mod clientip;
pub mod clock;
pub mod ids;
pub mod limits;
pub mod peer;
pub mod secret;
pub mod timefmt;

// Pure decisions and counters.
pub mod cors;
pub mod llm;
pub mod metrics;
pub mod policy;

// Shared state, by role.
pub mod store;

// Services over the store.
pub mod api;
pub mod audit;
pub mod auth;
pub mod providers;
pub mod ratelimit;

// The decision for one request.
pub mod admission;

// Pingora adapters: the proxy listener and the admin listener; logging.
pub mod listener;
pub mod logging;
pub mod ops;
pub mod proxy;

// Wiring: config assembles every module's settings; reload and app build the server.
pub mod app;
pub mod config;
pub mod properties;
pub mod reload;
