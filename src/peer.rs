//! Pingora peers with the gateway's timeouts and TLS verification set: one template per upstream
//! or provider, built at config load and cloned per request (Pingora pools connections by peer,
//! so every clone shares the keep-alive pool). A leaf.

use pingora::prelude::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

/// Where and how to connect: the parts of an upstream or provider a peer is made of.
pub struct PeerSpec<'a> {
    pub address: SocketAddr,
    pub tls: bool,
    pub sni: &'a str,
    pub verify_cert: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
}

/// A Pingora peer with timeouts and TLS verification set.
pub fn build(spec: &PeerSpec<'_>) -> HttpPeer {
    let mut peer = HttpPeer::new(spec.address, spec.tls, spec.sni.to_string());
    let o = &mut peer.options;
    o.connection_timeout = Some(spec.connect_timeout);
    o.total_connection_timeout = Some(spec.connect_timeout * 2);
    o.read_timeout = Some(spec.read_timeout);
    o.write_timeout = Some(spec.write_timeout);
    o.idle_timeout = Some(spec.idle_timeout);
    o.verify_cert = spec.verify_cert;
    o.verify_hostname = spec.verify_cert;
    peer
}
