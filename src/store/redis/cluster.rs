//! Redis Cluster: the crate's async `ClusterConnection`, watched and replaced when it stops
//! answering, and the cluster's nodes learned from the cluster itself.
//!
//! Why a watchdog: redis-rs 1.8's cluster driver can deadlock when a master dies under load.
//! A lost connection starts a background repair (`reconnect_loop`) that queues for the slot
//! map's write lock; a slot refresh then queues behind it, and while a refresh runs the driver
//! stops polling repairs. Tokio's fair lock hands the lock to the queued repair, which is never
//! polled again, so the refresh waits forever and every later command times out (seen: no
//! login for 120 s after a promotion; without concurrent traffic the lock is free and the bug
//! never shows). A slot map refreshed from a node that had not yet heard of the promotion
//! stays stale too: a refused connection only makes the driver reconnect to the dead node,
//! never refresh the map. Every [`WATCH_EVERY`] the watchdog pings the master of one slot of
//! each master's share; when two rounds in a row go unanswered, it builds a new connection
//! from every node it knows and swaps it in: the new one bootstraps from the live nodes and
//! the promoted replica's slot map.
//!
//! Why learn nodes: the seeds in `gateway.yaml` may all be dead after a failover (a single
//! seed that was the victim). The nodes the cluster itself lists (`CLUSTER NODES`, asked of a
//! live node every [`LEARN_EVERY`]) are kept, and both a rebuilt connection and the pub/sub
//! connection start from them.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{RedisError, TlsMode, Value};

use arc_swap::ArcSwapOption;

use super::info::{node_info, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::store::{RedisSettings, StoreError};

/// How often the cluster connection is asked whether it still answers.
pub const WATCH_EVERY: Duration = Duration::from_millis(250);
/// How long the watchdog's read may take before it counts as no answer.
const WATCH_TIMEOUT: Duration = Duration::from_millis(1000);
/// Unanswered reads in a row that replace the connection.
const STUCK_AFTER: u32 = 2;
/// A new connection gets this long before it may be replaced in turn.
const REBUILD_GAP: Duration = Duration::from_millis(1000);
/// How often the node list is learned from the cluster.
const LEARN_EVERY: Duration = Duration::from_secs(5);
/// The key the watchdog reads (any answer, a value, nil or an error reply, proves the driver
/// is alive; only silence counts against it).
const WATCH_KEY: &str = "portcullis-watchdog";

/// What `CLUSTER NODES` says: the live nodes, and one slot of each master's share.
#[derive(Debug, Default, PartialEq)]
pub struct Topology {
    /// `host:port` of every node that is not failed or without an address, masters first.
    pub nodes: Vec<String>,
    /// The first slot each master (failed or not) serves: the watchdog asks one per master, so
    /// a slot range whose owner died and whose map entry went stale is noticed.
    pub probe_slots: Vec<u16>,
}

/// The configured seeds and the nodes learned since.
pub struct Nodes {
    seeds: Vec<String>,
    learned: Mutex<Vec<String>>,
    probe_slots: Mutex<Vec<u16>>,
}

impl Nodes {
    pub fn new(seeds: Vec<String>) -> Self {
        Nodes { seeds, learned: Mutex::new(Vec::new()), probe_slots: Mutex::new(Vec::new()) }
    }

    fn probe_slots(&self) -> Vec<u16> {
        self.probe_slots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every node to try: the learned ones first (they are the cluster's current view), then
    /// any seed not among them.
    pub fn all(&self) -> Vec<String> {
        let mut out = self.learned.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for s in &self.seeds {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    fn learn(&self, t: Topology) {
        if !t.nodes.is_empty() {
            *self.learned.lock().unwrap_or_else(|p| p.into_inner()) = t.nodes;
        }
        if !t.probe_slots.is_empty() {
            *self.probe_slots.lock().unwrap_or_else(|p| p.into_inner()) = t.probe_slots;
        }
    }
}

/// One cluster deployment: its nodes, settings and the connection commands use now.
pub struct Cluster {
    nodes: Nodes,
    settings: RedisSettings,
    current: ArcSwapOption<ClusterConnection>,
}

impl Cluster {
    /// Checks the seeds (a bad address is refused at start); connects nothing yet.
    pub fn new(seeds: &[String], settings: &RedisSettings) -> Result<Arc<Self>, StoreError> {
        client(seeds, settings)?;
        Ok(Arc::new(Cluster { nodes: Nodes::new(seeds.to_vec()), settings: settings.clone(), current: ArcSwapOption::empty() }))
    }

    /// Starts connecting and watching (on the runtime that will drive the connection).
    pub fn start(self: &Arc<Self>) {
        match client(&self.nodes.all(), &self.settings) {
            Ok(c) => {
                self.current.store(Some(Arc::new(connect(&c))));
                tokio::spawn(watch(Arc::downgrade(self)));
            }
            Err(e) => tracing::error!(error = %e, "cannot create the Redis Cluster client"),
        }
    }

    /// The connection commands go to (None before [`Cluster::start`]).
    pub fn conn(&self) -> Option<ClusterConnection> {
        self.current.load().as_deref().cloned()
    }

    /// Every node to try, learned ones first.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.all()
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }
}

/// Reads `CLUSTER NODES`.
pub fn parse_nodes(text: &str) -> Topology {
    let mut masters = Vec::new();
    let mut replicas = Vec::new();
    let mut probe_slots = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (f.get(1), f.get(2)) else { continue };
        let is_master = flags.split(',').any(|fl| fl == "master");
        // Slots: `0-5460`, `5461`, or `[slot->-node]` while migrating (skipped).
        let first_slot = f.iter().skip(8).find_map(|r| r.split('-').next().and_then(|n| n.parse::<u16>().ok()));
        if let (true, Some(slot)) = (is_master, first_slot) {
            if slot < 16384 && !probe_slots.contains(&slot) {
                probe_slots.push(slot);
            }
        }
        if flags.split(',').any(|fl| matches!(fl, "fail" | "fail?" | "noaddr" | "handshake")) {
            continue;
        }
        // `ip:port@cport[,hostname]`
        let Some(host_port) = addr.split(['@', ',']).next().filter(|a| a.contains(':') && !a.starts_with(':')) else { continue };
        let list = if is_master { &mut masters } else { &mut replicas };
        if !list.iter().any(|a: &String| a == host_port) {
            list.push(host_port.to_string());
        }
    }
    masters.extend(replicas);
    probe_slots.sort_unstable();
    Topology { nodes: masters, probe_slots }
}

/// A cluster client for `addresses` with the settings' credentials, TLS and timeouts.
pub fn client(addresses: &[String], s: &RedisSettings) -> Result<ClusterClient, StoreError> {
    let infos = addresses.iter().map(|n| node_info(n, s)).collect::<Result<Vec<_>, _>>()?;
    let mut b = ClusterClient::builder(infos)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        // Long enough to ride out a replica's promotion (redirects and map refreshes are retried
        // within it), short enough not to hold callers.
        .overall_response_timeout(Some(Duration::from_millis(2000)));
    if let Some(u) = &s.username {
        b = b.username(u);
    }
    if let Some(p) = &s.password {
        b = b.password(p);
    }
    if s.tls {
        b = b.tls(TlsMode::Secure);
    }
    b.build().map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// A connection that connects in the background (commands wait for it).
pub fn connect(client: &ClusterClient) -> ClusterConnection {
    let config = redis::cluster::ClusterConfig::new().set_connection_timeout(CONNECT_TIMEOUT).set_response_timeout(RESPONSE_TIMEOUT);
    client.get_pending_async_connection_with_config(config)
}

/// Whether an answer, or an error, shows the connection's driver has stopped answering.
fn silent(r: &Result<Result<Value, RedisError>, tokio::time::error::Elapsed>) -> bool {
    match r {
        Err(_) => true,
        Ok(Ok(_)) => false,
        Ok(Err(e)) => e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_cluster_error(),
    }
}

/// `CLUSTER NODES` of the first node of `nodes` that answers.
async fn ask_nodes(nodes: &[String], s: &RedisSettings) -> Option<Topology> {
    for n in nodes {
        let Ok(client) = node_info(n, s).and_then(|i| redis::Client::open(i).map_err(|e| StoreError::Unavailable(e.to_string()))) else {
            continue;
        };
        let ask = async {
            let mut c = client.get_multiplexed_async_connection().await?;
            redis::cmd("CLUSTER").arg("NODES").query_async::<String>(&mut c).await
        };
        if let Ok(Ok(text)) = tokio::time::timeout(RESPONSE_TIMEOUT, ask).await {
            let found = parse_nodes(&text);
            if !found.nodes.is_empty() {
                return Some(found);
            }
        }
    }
    None
}

/// Whether the connection answers for every master's slots (a `PING` routed to the master of
/// each of `slots`, all at once), or, before the slots are known, for one key.
async fn answers(conn: ClusterConnection, slots: &[u16]) -> bool {
    if slots.is_empty() {
        let mut conn = conn;
        let answer = tokio::time::timeout(WATCH_TIMEOUT, redis::cmd("GET").arg(WATCH_KEY).query_async::<Value>(&mut conn)).await;
        return !silent(&answer);
    }
    let each = slots.iter().map(|&slot| {
        let mut conn = conn.clone();
        async move {
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)));
            tokio::time::timeout(WATCH_TIMEOUT, conn.route_command(redis::cmd("PING"), route)).await
        }
    });
    futures_util::future::join_all(each).await.iter().all(|a| !silent(a))
}

/// Watches the cluster connection for as long as the connector lives: learns the nodes, and
/// replaces a connection that stopped answering.
async fn watch(me: Weak<Cluster>) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut silent_in_a_row = 0;
    let mut rebuilt = Instant::now();
    let mut learned: Option<Instant> = None;
    loop {
        tick.tick().await;
        let Some(c) = me.upgrade() else { return };
        let (nodes, settings) = (&c.nodes, &c.settings);
        if learned.is_none_or(|at| at.elapsed() >= LEARN_EVERY) {
            if let Some(found) = ask_nodes(&nodes.all(), settings).await {
                nodes.learn(found);
                learned = Some(Instant::now());
            }
        }
        let Some(conn) = c.conn() else { continue };
        if answers(conn, &nodes.probe_slots()).await {
            silent_in_a_row = 0;
            continue;
        }
        silent_in_a_row += 1;
        if silent_in_a_row < STUCK_AFTER || rebuilt.elapsed() < REBUILD_GAP {
            continue;
        }
        let all = nodes.all();
        match client(&all, settings) {
            Ok(new) => {
                tracing::warn!(nodes = %all.join(","), "Redis Cluster: the connection stopped answering; reconnecting from the known nodes");
                c.current.store(Some(Arc::new(connect(&new))));
                rebuilt = Instant::now();
                silent_in_a_row = 0;
            }
            Err(e) => tracing::warn!(error = %e, "Redis Cluster: cannot build a new connection"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_read_from_cluster_nodes_live_masters_first() {
        let text = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003 master,fail - 0 1426238318243 3 disconnected 10923-16383
6ec2 127.0.0.1:30005@40005,node-5.example slave 67ed 0 1426238316232 5 connected
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
824f :0@0 master,noaddr - 0 0 0 disconnected
garbage
";
        let t = parse_nodes(text);
        assert_eq!(t.nodes, vec!["127.0.0.1:30002", "127.0.0.1:30001", "127.0.0.1:30004", "127.0.0.1:30005"]);
        assert_eq!(t.probe_slots, vec![0, 5461, 10923], "the failed master's share is probed too");
        assert_eq!(parse_nodes(""), Topology::default());
        let migrating = "e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected [93->-292f] 100\n";
        assert_eq!(parse_nodes(migrating).probe_slots, vec![100], "a migrating slot is no probe point");
    }

    #[test]
    fn learned_nodes_come_first_and_seeds_are_never_forgotten() {
        let n = Nodes::new(vec!["a:1".into(), "b:2".into()]);
        assert_eq!(n.all(), vec!["a:1", "b:2"]);
        n.learn(Topology { nodes: vec!["c:3".into(), "b:2".into()], probe_slots: vec![0, 9] });
        assert_eq!(n.all(), vec!["c:3", "b:2", "a:1"]);
        n.learn(Topology::default());
        assert_eq!(n.probe_slots(), vec![0, 9]);
        assert_eq!(n.all(), vec!["c:3", "b:2", "a:1"], "an empty answer keeps what was known");
    }

    #[test]
    fn only_silence_counts_against_the_connection() {
        use redis::ErrorKind;
        assert!(!silent(&Ok(Ok(Value::Nil))));
        let refused: RedisError = (ErrorKind::Server(redis::ServerErrorKind::ResponseError), "NOPERM").into();
        assert!(!silent(&Ok(Err(refused))), "an error reply is an answer");
        let io: RedisError = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into();
        assert!(silent(&Ok(Err(io))));
    }
}
