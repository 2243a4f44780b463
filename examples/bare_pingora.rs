//! The floor of any Pingora gateway: a passthrough proxy with no logic at all, built with the
//! same profile (fat LTO, one codegen unit) and allocator (mimalloc) as Portcullis.
//!
//! cargo run --release --example bare_pingora -- LISTEN UPSTREAM    (e.g. 127.0.0.1:8082 127.0.0.1:9000)

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Passthrough(SocketAddr);

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8082".into());
    let upstream: SocketAddr = args.next().unwrap_or_else(|| "127.0.0.1:9000".into()).parse().expect("upstream address");
    let conf = ServerConf { threads: 1, ..ServerConf::default() };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Passthrough(upstream));
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
