//! Upstream peers: one template per configured upstream, cloned per request (Pingora pools
//! connections by peer, so every clone shares the keep-alive pool).

use pingora::prelude::HttpPeer;

use crate::config::Upstream;

/// The Pingora peer for an upstream, with its timeouts and TLS settings.
pub fn peer(up: &Upstream) -> HttpPeer {
    let mut peer = HttpPeer::new(up.address, up.tls, up.sni.clone());
    let o = &mut peer.options;
    o.connection_timeout = Some(up.connect_timeout);
    o.total_connection_timeout = Some(up.connect_timeout * 2);
    o.read_timeout = Some(up.read_timeout);
    o.write_timeout = Some(up.write_timeout);
    o.idle_timeout = Some(up.idle_timeout);
    o.verify_cert = up.verify_cert;
    o.verify_hostname = up.verify_cert;
    peer
}
