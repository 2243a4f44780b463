//! Connections to the three Redis deployments, behind one handle the store's commands use.
//!
//! - standalone: one multiplexed, auto-reconnecting `ConnectionManager`;
//! - sentinel: the crate's `SentinelClient` names the master (asking each sentinel, then
//!   checking the master's `ROLE`); a follower task asks again every [`FOLLOW_EVERY`] and, when
//!   the answer changes (a failover), swaps in a connection manager for the new master. Commands
//!   in flight on the old one fail (the store reports unavailable) and the next ones go to the
//!   new master; nothing restarts;
//! - cluster: the crate's async `ClusterConnection` (slot map, MOVED/ASK redirects, refreshes
//!   the map when a replica is promoted), watched and replaced when it stops answering, with
//!   the nodes learned from the cluster itself (see [`super::cluster`]).
//!
//! Pub/sub needs a connection of its own: to the server (standalone), to the current master
//! (sentinel; a replica would do too, as messages are replicated), or to the first node that
//! answers, learned ones first (cluster: a plain `PUBLISH` reaches every node of a cluster, so
//! a subscriber on any node hears every instance).

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture, TlsMode, Value};

use super::cluster::Cluster;
use super::info::{invalid, node_info, with_credentials, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::store::{RedisMode, RedisSettings, StoreError};

/// How often the sentinels are asked who the master is.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// A connection to whichever deployment: cheap to clone, shared by every task.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, cmd: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            // The cluster client sends a whole pipeline to one node (and refuses one that spans
            // slots). A transaction must be single-slot anyway; a plain pipeline is split into
            // its commands, each routed by its own key and all in flight at once.
            Conn::Cluster(c) if !cmd.is_transaction() && cmd.len() > 1 => {
                let c = c.clone();
                Box::pin(async move {
                    let each = cmd.cmd_iter().map(|one| {
                        let mut c = c.clone();
                        async move { c.req_packed_command(one).await }
                    });
                    futures_util::future::try_join_all(each).await
                })
            }
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

enum Target {
    Standalone(redis::Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(Arc<Cluster>),
}

/// The current connection, and the server it talks to (for pub/sub and messages).
struct Current {
    conn: Conn,
    /// The standalone server or the Sentinel master; None for a cluster.
    server: Option<redis::Client>,
    address: String,
}

/// Opens and follows the connections of one store.
pub struct Connector {
    target: Target,
    current: ArcSwapOption<Current>,
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200))
}

fn sentinel_addr(address: &str, tls: bool) -> Result<ConnectionAddr, StoreError> {
    let (host, port) = crate::store::host_port(address).ok_or_else(|| StoreError::Unavailable(format!("`{address}` is not host:port")))?;
    Ok(if tls { ConnectionAddr::TcpTls { host, port, insecure: false, tls_params: None } } else { ConnectionAddr::Tcp(host, port) })
}

impl Connector {
    /// Builds the clients; connects nothing yet.
    pub fn new(s: &RedisSettings) -> Result<Self, StoreError> {
        let target = match &s.mode {
            RedisMode::Standalone { url } => {
                let info = with_credentials(url.as_str().into_connection_info().map_err(invalid)?, s);
                Target::Standalone(redis::Client::open(info).map_err(invalid)?)
            }
            RedisMode::Sentinel { sentinels, master_name, db } => {
                let addrs = sentinels.iter().map(|a| sentinel_addr(a, s.tls)).collect::<Result<Vec<_>, _>>()?;
                let mut b = SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master)
                    .map_err(invalid)?
                    .set_client_to_redis_db(*db);
                if let Some(u) = &s.username {
                    b = b.set_client_to_redis_username(u);
                }
                if let Some(p) = &s.password {
                    b = b.set_client_to_redis_password(p);
                }
                if s.tls {
                    b = b.set_client_to_redis_tls_mode(TlsMode::Secure).set_client_to_sentinel_tls_mode(TlsMode::Secure);
                }
                Target::Sentinel(tokio::sync::Mutex::new(b.build().map_err(invalid)?))
            }
            RedisMode::Cluster { nodes } => Target::Cluster(Cluster::new(nodes, s)?),
        };
        Ok(Connector { target, current: ArcSwapOption::empty() })
    }

    /// Starts connecting, on the runtime that will drive the connections (a tokio context).
    pub fn start(self: &Arc<Self>) {
        if self.current.load().is_some() {
            return;
        }
        match &self.target {
            Target::Standalone(client) => match ConnectionManager::new_lazy_with_config(client.clone(), manager_config()) {
                Ok(c) => self.current.store(Some(Arc::new(Current {
                    conn: Conn::Single(c),
                    server: Some(client.clone()),
                    address: client.get_connection_info().addr().to_string(),
                }))),
                Err(e) => tracing::error!(error = %e, "cannot create the Redis connection manager"),
            },
            Target::Cluster(cluster) => cluster.start(),
            Target::Sentinel(_) => {
                let me = Arc::downgrade(self);
                tokio::spawn(follow(me));
            }
        }
    }

    /// The connection commands go to.
    pub fn conn(&self) -> Result<Conn, StoreError> {
        if let Target::Cluster(cluster) = &self.target {
            return cluster.conn().map(Conn::Cluster).ok_or_else(|| StoreError::Unavailable("not connected yet".into()));
        }
        self.current
            .load()
            .as_ref()
            .map(|c| c.conn.clone())
            .ok_or_else(|| StoreError::Unavailable("not connected yet (no master found)".into()))
    }

    /// A dedicated pub/sub connection.
    pub async fn pubsub(&self) -> Result<PubSub, StoreError> {
        match &self.target {
            Target::Cluster(cluster) => {
                let mut last = StoreError::Unavailable("no cluster node".into());
                for address in cluster.nodes() {
                    let node = match node_info(&address, cluster.settings()).and_then(|i| redis::Client::open(i).map_err(invalid)) {
                        Ok(n) => n,
                        Err(e) => {
                            last = e;
                            continue;
                        }
                    };
                    match tokio::time::timeout(CONNECT_TIMEOUT * 2, node.get_async_pubsub()).await {
                        Ok(Ok(p)) => return Ok(p),
                        Ok(Err(e)) => last = invalid(e),
                        Err(_) => last = StoreError::Unavailable(format!("{address} timed out")),
                    }
                }
                Err(last)
            }
            _ => {
                let server = self.current.load().as_ref().and_then(|c| c.server.clone());
                let server = server.ok_or_else(|| StoreError::Unavailable("not connected yet (no master found)".into()))?;
                tokio::time::timeout(CONNECT_TIMEOUT * 2, server.get_async_pubsub())
                    .await
                    .map_err(|_| StoreError::Unavailable("timed out connecting for pub/sub".into()))?
                    .map_err(invalid)
            }
        }
    }

    /// Asks the sentinels who the master is; swaps connections when it changed.
    async fn refresh_master(&self) -> Result<(), StoreError> {
        let Target::Sentinel(sentinel) = &self.target else {
            return Ok(());
        };
        let client = tokio::time::timeout(RESPONSE_TIMEOUT * 2, async { sentinel.lock().await.async_get_client().await })
            .await
            .map_err(|_| StoreError::Unavailable("the sentinels did not answer in time".into()))?
            .map_err(invalid)?;
        let address = client.get_connection_info().addr().to_string();
        let known = self.current.load().as_ref().map(|c| c.address.clone());
        if known.as_deref() == Some(address.as_str()) {
            return Ok(());
        }
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config()).map_err(invalid)?;
        match known {
            Some(old) => tracing::warn!(from = %old, to = %address, "Redis Sentinel failover: following the new master"),
            None => tracing::info!(master = %address, "Redis Sentinel: master found"),
        }
        self.current.store(Some(Arc::new(Current { conn: Conn::Single(conn), server: Some(client), address })));
        Ok(())
    }

    /// Whether each address answers, for `portcullis check --connect`: one line per address
    /// tried, then Ok if the deployment as a whole is usable.
    pub async fn probe(&self, s: &RedisSettings) -> (Vec<String>, Result<(), String>) {
        let mut lines = Vec::new();
        let ping = |client: redis::Client, cmd: Cmd| async move {
            let run = async {
                let mut c = client.get_multiplexed_async_connection().await?;
                cmd.query_async::<Value>(&mut c).await
            };
            match tokio::time::timeout(RESPONSE_TIMEOUT * 2, run).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_string()),
            }
        };
        match (&self.target, &s.mode) {
            (Target::Standalone(client), _) => {
                let r = ping(client.clone(), redis::cmd("PING")).await.map(|_| ());
                lines.push(format!("{}: {}", s.addresses().join(", "), r.as_ref().err().map_or("ok", |e| e.as_str())));
                (lines, r)
            }
            (Target::Sentinel(_), RedisMode::Sentinel { sentinels, master_name, .. }) => {
                let mut any = false;
                for a in sentinels {
                    let r = match node_info(a, s).and_then(|i| redis::Client::open(i).map_err(invalid)) {
                        Ok(c) => {
                            let mut cmd = redis::cmd("SENTINEL");
                            cmd.arg("get-master-addr-by-name").arg(master_name);
                            match ping(c, cmd).await {
                                Ok(Value::Nil) => Err(format!("does not know a master named `{master_name}`")),
                                Ok(_) => Ok(()),
                                Err(e) => Err(e),
                            }
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    any |= r.is_ok();
                    lines.push(format!("sentinel {a}: {}", r.err().as_deref().unwrap_or("ok")));
                }
                let r = match self.refresh_master().await {
                    Ok(()) => {
                        let master = self.current.load().as_ref().map(|c| c.address.clone()).unwrap_or_default();
                        lines.push(format!("master `{master_name}`: {master}"));
                        Ok(())
                    }
                    Err(e) if any => Err(format!("the sentinels answered but the master is not reachable: {e}")),
                    Err(_) => Err(format!("no sentinel reachable (tried {})", sentinels.join(", "))),
                };
                (lines, r)
            }
            (Target::Cluster(_), RedisMode::Cluster { nodes: names }) => {
                let mut ok = false;
                for a in names {
                    let mut cmd = redis::cmd("CLUSTER");
                    cmd.arg("INFO");
                    let client = node_info(a, s).and_then(|i| redis::Client::open(i).map_err(invalid));
                    let r = match client {
                        Err(e) => Err(e.to_string()),
                        Ok(client) => ping(client, cmd).await,
                    };
                    let r = match r {
                        Ok(Value::BulkString(b)) if String::from_utf8_lossy(&b).contains("cluster_state:ok") => Ok(()),
                        Ok(Value::VerbatimString { text, .. }) if text.contains("cluster_state:ok") => Ok(()),
                        Ok(_) => Err("answers, but the cluster state is not ok".to_string()),
                        Err(e) => Err(e),
                    };
                    ok |= r.is_ok();
                    lines.push(format!("node {a}: {}", r.err().as_deref().unwrap_or("ok")));
                }
                (lines, if ok { Ok(()) } else { Err(format!("no cluster node usable (tried {})", names.join(", "))) })
            }
            _ => (lines, Err("mode and target disagree".into())),
        }
    }
}

/// Follows the Sentinel master for as long as the connector lives.
async fn follow(me: Weak<Connector>) {
    let mut failing = false;
    loop {
        let Some(c) = me.upgrade() else { return };
        match c.refresh_master().await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "Redis Sentinel: cannot find the master; asking again");
            }
            Err(_) => {}
        }
        drop(c);
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
