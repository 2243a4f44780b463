//! Application upstreams: what gateway.yaml says of one, and its Pingora peer.

use pingora::prelude::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

use crate::peer::{self, PeerSpec};

/// An application upstream (`upstreams:` in gateway.yaml).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub address: SocketAddr,
    pub tls: bool,
    /// The host name from the URL: SNI and certificate name for HTTPS, `Host` if rewritten.
    pub host: String,
    pub sni: String,
    pub verify_cert: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub forward_authorization: bool,
    /// Send `Host: <upstream host>` instead of the client's.
    pub rewrite_host: Option<String>,
    /// Add the gateway's security headers to responses that lack them.
    pub security_headers: bool,
    /// Send a signed identity assertion (`X-Portcullis-Assertion`).
    pub identity_assertion: bool,
}

/// The Pingora peer for an upstream.
pub fn peer(up: &Upstream) -> HttpPeer {
    peer::build(&PeerSpec {
        address: up.address,
        tls: up.tls,
        sni: &up.sni,
        verify_cert: up.verify_cert,
        connect_timeout: up.connect_timeout,
        read_timeout: up.read_timeout,
        write_timeout: up.write_timeout,
        idle_timeout: up.idle_timeout,
    })
}
