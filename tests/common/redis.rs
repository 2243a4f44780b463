//! A private `redis-server` on a free loopback port, with its own data directory (append-only,
//! fsync always, so a killed and restarted server keeps its data). Killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port};

/// A redis-server this test owns.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server (requires `redis-server` on PATH; `scripts/ensure-deps` installs it).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with more arguments (`--replicaof`, `--cluster-enabled`, ...).
    pub fn start_with(extra: &[&str]) -> Self {
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        r.spawn();
        r
    }

    /// A replica of `master`.
    pub fn replica_of(master: &RedisServer) -> Self {
        Self::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()])
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "yes", "--appendfsync", "always"])
            .args(&self.extra)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/ensure-deps installs it)");
        self.child = Some(child);
        let up = eventually(Duration::from_secs(10), || self.cli(&["PING"]).trim() == "PONG");
        assert!(up, "redis-server did not start on port {}", self.port);
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server abruptly (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Restarts it with its data gone (a server that lost its disk).
    pub fn restart_empty(&mut self) {
        self.kill();
        for entry in std::fs::read_dir(self.dir.path()).expect("data dir").flatten() {
            let path = entry.path();
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
        self.spawn();
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args([sig, &c.id().to_string()]).status();
        }
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs `redis-cli` against this server and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let password = self.extra.iter().position(|a| a == "--requirepass").and_then(|i| self.extra.get(i + 1));
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .envs(password.map(|p| ("REDISCLI_AUTH", p.as_str())))
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// The total number of commands this server has processed (from `INFO stats`).
    pub fn commands_processed(&self) -> u64 {
        self.cli(&["INFO", "stats"])
            .lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Redis Sentinel: sentinels watching `master` under the name `portcullis` (quorum 2, a master
/// is down after 1 s).
pub struct Sentinels {
    children: Vec<Child>,
    pub ports: Vec<u16>,
    dead: Vec<usize>,
    _dir: tempfile::TempDir,
}

impl Sentinels {
    pub fn start(master: &RedisServer, count: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut children = Vec::new();
        let mut ports = Vec::new();
        for i in 0..count {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor portcullis 127.0.0.1 {} 2\nsentinel down-after-milliseconds portcullis 1000\nsentinel failover-timeout portcullis 4000\nsentinel parallel-syncs portcullis 1\n",
                    dir.path().display(),
                    master.port
                ),
            )
            .expect("sentinel config");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel");
            children.push(child);
            ports.push(port);
        }
        let s = Sentinels { children, ports, dead: Vec::new(), _dir: dir };
        let ready = eventually(Duration::from_secs(15), || {
            s.ports.iter().all(|p| s.cli(*p, &["SENTINEL", "get-master-addr-by-name", "portcullis"]).contains(&master.port.to_string()))
        });
        assert!(ready, "the sentinels did not find the master");
        s
    }

    /// `["127.0.0.1:P", ...]`.
    pub fn addresses(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect()
    }

    /// Kills sentinel `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        let _ = self.children[i].kill();
        let _ = self.children[i].wait();
        self.dead.push(i);
    }

    /// The port of the master the live sentinels name now.
    pub fn master_port(&self) -> Option<u16> {
        let live = (0..self.ports.len()).find(|i| !self.dead.contains(i))?;
        let out = self.cli(self.ports[live], &["SENTINEL", "get-master-addr-by-name", "portcullis"]);
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A Redis Cluster of three masters with a replica each (node timeout 1 s).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_nodes(1000)
    }

    fn start_nodes(node_timeout_ms: u64) -> Self {
        let timeout = node_timeout_ms.to_string();
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    &timeout,
                    "--cluster-config-file",
                    "nodes.conf",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let c = RedisCluster { nodes };
        let ok = eventually(Duration::from_secs(20), || c.nodes.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")));
        assert!(ok, "the cluster did not become ok");
        // Every replica attached and synced, so a killed master has a replica to promote.
        let synced = eventually(Duration::from_secs(20), || {
            c.nodes
                .iter()
                .filter(|n| n.cli(&["ROLE"]).starts_with("slave"))
                .all(|n| n.cli(&["INFO", "replication"]).contains("master_link_status:up"))
        });
        assert!(synced, "replicas did not sync");
        c
    }

    /// `["127.0.0.1:P", ...]` of every node.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect()
    }

    /// The node serving `key`'s slot as master now (None while no live master serves it).
    pub fn master_of(&self, key: &str) -> Option<usize> {
        let slot: u16 = self.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]).trim().parse().expect("slot");
        let running = self.nodes.iter().position(|n| n.is_running()).expect("a node runs");
        let nodes = self.nodes[running].cli(&["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let port: u16 = f[1].split(['@', ':']).nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            for range in &f[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    if (a..=b).contains(&slot) {
                        return self.nodes.iter().position(|n| n.port == port);
                    }
                }
            }
        }
        None
    }
}

impl RedisCluster {
    /// A cluster whose nodes take `node_timeout_ms` to declare a master failed (production
    /// clusters use seconds, as the acceptance runs did with 2000).
    pub fn start_with_node_timeout(node_timeout_ms: u64) -> Self {
        Self::start_nodes(node_timeout_ms)
    }

    /// Indexes of the running nodes that are masters now.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].is_running() && self.nodes[i].cli(&["ROLE"]).starts_with("master")).collect()
    }

    /// Indexes of the running nodes that are replicas now.
    pub fn replicas(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].is_running() && self.nodes[i].cli(&["ROLE"]).starts_with("slave")).collect()
    }

    /// Whether every running node says the cluster is ok and no slot is served by `gone` (the
    /// port of a node that was killed): its replica has taken over.
    pub fn took_over_from(&self, gone: u16) -> bool {
        let live: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.is_running()).collect();
        live.iter().all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            && live.iter().all(|n| {
                n.cli(&["CLUSTER", "NODES"]).lines().all(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let port = f.get(1).and_then(|a| a.split(['@', ':']).nth(1)).and_then(|p| p.parse::<u16>().ok());
                    // A line for the killed node: it must be marked failed or hold no slots.
                    port != Some(gone) || f.len() <= 8 || f[2].contains("fail")
                })
            })
    }

    /// Whether every running replica has a live, synced link to its master.
    pub fn replicas_synced(&self) -> bool {
        self.replicas().iter().all(|&i| self.nodes[i].cli(&["INFO", "replication"]).contains("master_link_status:up"))
    }
}
