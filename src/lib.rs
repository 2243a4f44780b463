//! Portcullis: a reverse-proxy auth gateway on Pingora.
//!
//! Requests are normalized, routed, authenticated (JWT) and authorized (roles and a permission
//! matrix from gateway.yaml) before anything is forwarded upstream.

pub mod admin;
pub mod admission;
pub mod app;
pub mod audit;
pub mod auth;
pub mod clientip;
pub mod config;
pub mod cors;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod providers;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod store;
pub mod timefmt;
