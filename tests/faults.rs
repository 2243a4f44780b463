//! The three Redis deployments, and faults injected under load: each scenario runs two gateway
//! instances on real processes (Redis, Sentinel, Cluster nodes), keeps a steady load on both
//! (proxied requests, which use local views, and store reads through `/auth/sessions`), injects
//! the fault, waits for recovery, and prints what failed during and after it, how long recovery
//! took and what was lost. Run with `--no-capture` to see the figures.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::redis::{RedisCluster, Sentinels};
use common::{eventually, seed_config_with_store, MockUpstream, RedisServer, Reply, TestGateway};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PASSWORD: &str = "fault-password-123";

fn login(gw: &TestGateway, email: &str) -> (String, String) {
    let r = gw.request("POST", "/auth/login").json(&json!({"email": email, "password": PASSWORD})).send();
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    (v["access_token"].as_str().unwrap().into(), v["refresh_token"].as_str().unwrap().into())
}

fn refresh(gw: &TestGateway, token: &str) -> Reply {
    gw.request("POST", "/auth/refresh").json(&json!({"refresh_token": token})).send()
}

/// The `sid` claim of a token (read, not verified: the gateway verified it).
fn sid(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sid"].as_str().unwrap().to_string()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    /// `GET /profile`: authenticated, proxied; decided from local views.
    Proxied,
    /// `GET /auth/sessions`: a store read.
    Store,
}

struct Sample {
    at: Instant,
    instance: usize,
    op: Op,
    status: u16,
}

/// Steady load on every instance until `stop`: proxied requests every 5 ms and a store read
/// every 50 ms, each with its own token.
fn steady_load<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    gws: &'s [&'s TestGateway],
    tokens: &'s [String],
    stop: &'s AtomicBool,
    out: &'s Mutex<Vec<Sample>>,
) {
    for (i, gw) in gws.iter().enumerate() {
        for (op, every) in [(Op::Proxied, Duration::from_millis(5)), (Op::Store, Duration::from_millis(50))] {
            let token = &tokens[i];
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let path = if op == Op::Proxied { "/profile" } else { "/auth/sessions" };
                    let status = gw.get(path).bearer(token).send().status;
                    out.lock().unwrap().push(Sample { at: Instant::now(), instance: i, op, status });
                    std::thread::sleep(every);
                }
            });
        }
    }
}

/// Sets `stop` when dropped, so a failed assertion in a scenario ends its load threads.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What a scenario reports.
struct Report {
    name: &'static str,
    fault_at: Instant,
    recovered_at: Instant,
    samples: Vec<Sample>,
}

impl Report {
    fn failed(&self, op: Op, instance: Option<usize>, from: Instant, to: Instant) -> (usize, usize) {
        let in_range = self
            .samples
            .iter()
            .filter(|s| s.op == op && instance.is_none_or(|i| s.instance == i) && s.at >= from && s.at < to)
            .collect::<Vec<_>>();
        (in_range.iter().filter(|s| s.status != 200).count(), in_range.len())
    }

    fn print(&self) {
        let end = self.samples.iter().map(|s| s.at).max().unwrap_or(self.recovered_at);
        let start = self.samples.iter().map(|s| s.at).min().unwrap_or(self.fault_at);
        println!("== {}", self.name);
        println!("   recovery took {:?} after the fault", self.recovered_at - self.fault_at);
        for op in [Op::Proxied, Op::Store] {
            let before = self.failed(op, None, start, self.fault_at);
            let during = self.failed(op, None, self.fault_at, self.recovered_at);
            let after = self.failed(op, None, self.recovered_at, end + Duration::from_millis(1));
            println!("   {op:?}: failed before {}/{}, during {}/{}, after {}/{}", before.0, before.1, during.0, during.1, after.0, after.1);
        }
    }

    /// Nothing failed before the fault or after recovery, and proxied requests never failed.
    fn assert_clean(&self) {
        let end = Instant::now();
        for op in [Op::Proxied, Op::Store] {
            let start = self.samples.iter().map(|s| s.at).min().unwrap();
            assert_eq!(self.failed(op, None, start, self.fault_at).0, 0, "{op:?} failed before the fault");
            assert_eq!(self.failed(op, None, self.recovered_at, end).0, 0, "{op:?} failed after recovery");
        }
        let start = self.samples.iter().map(|s| s.at).min().unwrap();
        assert_eq!(self.failed(Op::Proxied, None, start, end).0, 0, "proxied requests never need the store");
    }
}

/// Waits until a store read works on every instance; when it did.
fn store_reads_work(gws: &[&TestGateway], tokens: &[String], deadline: Duration) -> Instant {
    let start = Instant::now();
    loop {
        if gws.iter().zip(tokens).all(|(g, t)| g.get("/auth/sessions").bearer(t).send().status == 200) {
            return Instant::now();
        }
        assert!(start.elapsed() < deadline, "the store did not come back within {deadline:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sentinel_failover_under_load() {
    sentinel_failover(false);
}

/// The sentinel the gateway asks first dies with the master: the others are asked.
#[test]
fn sentinel_failover_with_the_first_sentinel_killed_too() {
    sentinel_failover(true);
}

fn sentinel_failover(kill_first_sentinel: bool) {
    let master = RedisServer::start();
    let replica = RedisServer::replica_of(&master);
    assert!(eventually(Duration::from_secs(10), || replica.cli(&["INFO", "replication"]).contains("master_link_status:up")));
    let mut sentinels = Sentinels::start(&master, 3);
    let up = MockUpstream::start();
    let store =
        format!("{{ backend: redis, redis: {{ mode: sentinel, sentinels: {:?}, master_name: portcullis }} }}", sentinels.addresses());
    // Reconciliation once an hour: a revocation that reaches the other instance in seconds came
    // through pub/sub.
    // Rate limits syncing through the store every 100 ms, as in production.
    let config = format!(
        "{}\nsessions: {{ activity_flush_seconds: 3600 }}\nrate_limits: {{ api: {{ per_user: {{ requests: 1000000, per_seconds: 60 }} }} }}\n",
        seed_config_with_store(&up.url(), &store)
    );
    let (a, b) = (TestGateway::start(&config), TestGateway::start(&config));
    assert_eq!(a.metric("portcullis_store_up"), Some(1.0));

    // Sessions created before the kill (and replicated).
    a.create_user("load@example.com", PASSWORD, "user");
    a.create_user("kept@example.com", PASSWORD, "user");
    let tokens = vec![login(&a, "load@example.com").0, login(&b, "load@example.com").0];
    let (kept_access, kept_refresh) = login(&a, "kept@example.com");
    let replicas: i64 = master.cli(&["WAIT", "1", "2000"]).trim().parse().unwrap();
    assert_eq!(replicas, 1, "the replica has every write");

    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Vec::new());
    let gws = [&a, &b];
    let mut master = master;
    let (fault_at, recovered_at) = std::thread::scope(|s| {
        steady_load(s, &gws, &tokens, &stop, &samples);
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_secs(1));
        let fault_at = Instant::now();
        master.kill();
        if kill_first_sentinel {
            sentinels.kill(0);
        }
        assert!(eventually(Duration::from_secs(30), || sentinels.master_port() == Some(replica.port)), "the replica was promoted");
        let promoted = Instant::now();
        let recovered_at = store_reads_work(&gws, &tokens, Duration::from_secs(30));
        println!("   promotion seen by the sentinels {:?} after the kill", promoted - fault_at);
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        (fault_at, recovered_at)
    });
    let name = if kill_first_sentinel {
        "Sentinel: master and the first sentinel killed, replica promoted"
    } else {
        "Sentinel: master killed, replica promoted"
    };
    let report = Report { name, fault_at, recovered_at, samples: samples.into_inner().unwrap() };
    report.print();
    report.assert_clean();

    // The session made before the kill still works: its refresh token rotates on the new master.
    let r = refresh(&b, &kept_refresh);
    assert_eq!(r.status, 200, "a session created before the failover survives it");
    assert_eq!(a.get("/profile").bearer(&kept_access).send().status, 200);
    // A revocation made after the promotion reaches both instances.
    let fresh = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(b.request("POST", "/auth/logout").bearer(&fresh).send().status, 200);
    assert!(eventually(Duration::from_secs(5), || a.get("/profile").bearer(&fresh).send().status == 401), "A learned of B's logout");
    assert_eq!(b.get("/profile").bearer(&fresh).send().status, 401);
    assert_eq!(a.admin_get("/readyz").status, 200);
    assert_eq!(a.metric("portcullis_store_up"), Some(1.0));
    assert!(a.log().contains("following the new master") || b.log().contains("following the new master"));
    let _ = sentinels;
}

#[test]
fn cluster_master_killed_under_load() {
    let mut cluster = RedisCluster::start();
    let up = MockUpstream::start();
    let store = format!("{{ backend: redis, redis: {{ mode: cluster, nodes: {:?} }} }}", cluster.addresses());
    let config = format!("{}\nsessions: {{ activity_flush_seconds: 3600 }}\n", seed_config_with_store(&up.url(), &store));
    let (a, b) = (TestGateway::start(&config), TestGateway::start(&config));

    // Users, API keys' registry and the revocation set each have one slot; the master killed
    // is one holding none of them, so that "the other slots" include every one of them.
    let users = cluster.master_of("portcullis:{users}:all").unwrap();
    let revoked = cluster.master_of("portcullis:revoked").unwrap();
    let victim =
        (0..cluster.nodes.len()).find(|&i| i != users && i != revoked && cluster.nodes[i].cli(&["ROLE"]).starts_with("master")).unwrap();
    a.create_user("load@example.com", PASSWORD, "user");
    // Sessions on both sides of the fault: some whose keys the victim holds, some elsewhere.
    let mut on_victim = Vec::new();
    let mut elsewhere = Vec::new();
    for _ in 0..12 {
        let (access, refresh) = login(&a, "load@example.com");
        let key = format!("portcullis:session:{}", sid(&access));
        if cluster.master_of(&key) == Some(victim) {
            on_victim.push((access, refresh))
        } else {
            elsewhere.push((access, refresh))
        }
        if !on_victim.is_empty() && elsewhere.len() >= 4 {
            break;
        }
    }
    assert!(!on_victim.is_empty() && elsewhere.len() >= 4, "sessions on both sides");
    let _: String = cluster.nodes[victim].cli(&["WAIT", "1", "2000"]);
    // Store reads for the load: GET /auth/sessions reads the index and the sessions of one user.
    a.create_user("steady@example.com", PASSWORD, "user");
    let tokens = vec![login(&a, "steady@example.com").0, login(&b, "steady@example.com").0];

    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Vec::new());
    let unaffected = Mutex::new((0usize, 0usize));
    let gws = [&a, &b];
    let (fault_at, recovered_at) = std::thread::scope(|s| {
        steady_load(s, &gws, &tokens, &stop, &samples);
        let _stop = StopOnDrop(&stop);
        // Refreshes of sessions whose keys are not on the victim: they must never fail.
        s.spawn(|| {
            let mut chain: Vec<String> = elsewhere.iter().skip(1).map(|(_, r)| r.clone()).collect();
            while !stop.load(Ordering::Relaxed) {
                for (i, token) in chain.iter_mut().enumerate() {
                    let gw = if i % 2 == 0 { &a } else { &b };
                    let r = refresh(gw, token);
                    let mut u = unaffected.lock().unwrap();
                    u.1 += 1;
                    if r.status == 200 {
                        *token = r.json()["refresh_token"].as_str().unwrap().to_string();
                    } else {
                        u.0 += 1;
                        eprintln!("refresh on a live slot failed: {} {}", r.status, String::from_utf8_lossy(&r.body));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        std::thread::sleep(Duration::from_secs(1));
        let fault_at = Instant::now();
        cluster.nodes[victim].kill();
        // A revocation during the failover, in a slot still served: both instances enforce it.
        let (revoke_me, _) = &elsewhere[0];
        assert_eq!(a.request("POST", "/auth/logout").bearer(revoke_me).send().status, 200, "revocations keep working");
        assert!(eventually(Duration::from_secs(5), || b.get("/profile").bearer(revoke_me).send().status == 401));
        let survivor = cluster.nodes.iter().position(|n| n.is_running()).unwrap();
        assert!(
            eventually(Duration::from_secs(30), || cluster.nodes[survivor].cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
                && cluster.master_of(&format!("portcullis:session:{}", sid(&on_victim[0].0))).is_some_and(|m| m != victim)),
            "the replica took over"
        );
        let promoted = Instant::now();
        // The session whose key moved to the promoted replica works again.
        let start = Instant::now();
        while refresh(&a, &on_victim[0].1).status != 200 {
            assert!(start.elapsed() < Duration::from_secs(20), "the promoted replica serves its slots");
            std::thread::sleep(Duration::from_millis(100));
        }
        let recovered_at = Instant::now().max(store_reads_work(&gws, &tokens, Duration::from_secs(20)));
        println!(
            "   replica promoted {:?} after the kill; its sessions served again {:?} after it",
            promoted - fault_at,
            recovered_at - promoted
        );
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        (fault_at, recovered_at)
    });
    let report = Report {
        name: "Cluster: one master of three killed, its replica promoted",
        fault_at,
        recovered_at,
        samples: samples.into_inner().unwrap(),
    };
    report.print();
    let (failed, total) = *unaffected.lock().unwrap();
    println!("   refreshes of sessions in other slots: {failed} failed of {total}");
    assert_eq!(failed, 0, "sessions in other slots are unaffected throughout");
    assert!(total > 0);
    // Proxied requests never failed; the store reads of /auth/sessions touch the steady user's
    // index and sessions, which may live on the victim: they are allowed to fail during.
    let start = report.samples.iter().map(|s| s.at).min().unwrap();
    assert_eq!(report.failed(Op::Proxied, None, start, Instant::now()).0, 0);
    assert_eq!(report.failed(Op::Store, None, recovered_at, Instant::now()).0, 0, "nothing fails after recovery");
    assert_eq!(a.admin_get("/readyz").status, 200);
}

#[test]
fn redis_paused_then_resumed_honours_on_store_outage() {
    let redis = RedisServer::start();
    let up = MockUpstream::start();
    let store = common::redis_store(&redis.url());
    let cached = seed_config_with_store(&up.url(), &store);
    let deny = format!("{cached}\nsessions: {{ on_store_outage: deny }}\n");
    let (a, b) = (TestGateway::start(&cached), TestGateway::start(&deny));
    a.create_user("load@example.com", PASSWORD, "user");
    let tokens = vec![login(&a, "load@example.com").0, login(&b, "load@example.com").0];

    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Vec::new());
    let gws = [&a, &b];
    let (fault_at, resumed_at, denied_after, recovered_at) = std::thread::scope(|s| {
        steady_load(s, &gws, &tokens, &stop, &samples);
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_secs(1));
        let fault_at = Instant::now();
        redis.pause();
        // Deny mode: refused once the outage is noticed; serve_cached goes on serving.
        let start = Instant::now();
        while b.get("/profile").bearer(&tokens[1]).send().status != 503 {
            assert!(start.elapsed() < Duration::from_secs(8), "deny mode noticed the outage");
            std::thread::sleep(Duration::from_millis(20));
        }
        let denied_after = start.elapsed();
        assert_eq!(b.admin_get("/readyz").status, 503, "/readyz tells the truth");
        assert_eq!(b.metric("portcullis_store_up"), Some(0.0));
        std::thread::sleep(Duration::from_secs(10).saturating_sub(fault_at.elapsed()));
        redis.resume();
        let resumed_at = Instant::now();
        let recovered_at = store_reads_work(&gws, &tokens, Duration::from_secs(20));
        let start = Instant::now();
        while b.get("/profile").bearer(&tokens[1]).send().status != 200 {
            assert!(start.elapsed() < Duration::from_secs(10), "deny mode recovered by itself");
            std::thread::sleep(Duration::from_millis(20));
        }
        let recovered_at = recovered_at.max(Instant::now());
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        (fault_at, resumed_at, denied_after, recovered_at)
    });
    let samples = samples.into_inner().unwrap();
    let report = Report { name: "Redis paused (SIGSTOP) for 10 s", fault_at, recovered_at, samples };
    report.print();
    println!("   deny mode refusing {denied_after:?} after the pause; recovered {:?} after the resume", recovered_at - resumed_at);
    let end = Instant::now();
    let start = report.samples.iter().map(|s| s.at).min().unwrap();
    let cached_failed = report.failed(Op::Proxied, Some(0), start, end);
    println!("   serve_cached instance: proxied failed {}/{} throughout", cached_failed.0, cached_failed.1);
    assert_eq!(cached_failed.0, 0, "serve_cached serves from local views throughout");
    for op in [Op::Proxied, Op::Store] {
        assert_eq!(report.failed(op, None, start, fault_at).0, 0);
        assert_eq!(report.failed(op, None, recovered_at, end).0, 0, "{op:?} after recovery");
    }
    assert_eq!(a.admin_get("/readyz").status, 200);
    assert_eq!(b.metric("portcullis_store_up"), Some(1.0));
}

#[test]
fn redis_restarted_empty_forgets_sessions_but_never_revocations() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::start();
    let config = seed_config_with_store(&up.url(), &common::redis_store(&redis.url()));
    let (a, b) = (TestGateway::start(&config), TestGateway::start(&config));
    a.create_user("wiped@example.com", PASSWORD, "user");
    let (revoked, _) = login(&a, "wiped@example.com");
    let (live, live_refresh) = login(&a, "wiped@example.com");
    assert_eq!(a.request("POST", "/auth/logout").bearer(&revoked).send().status, 200);
    assert!(eventually(Duration::from_secs(5), || b.get("/profile").bearer(&revoked).send().status == 401));

    let fault_at = Instant::now();
    redis.restart_empty();
    assert_eq!(redis.cli(&["DBSIZE"]).trim(), "0", "the data is gone");
    for gw in [&a, &b] {
        assert!(eventually(Duration::from_secs(10), || gw.admin_get("/readyz").status == 200), "recovers by itself");
    }
    let recovered = fault_at.elapsed();
    // Revocations hold: locally at once, and written back to the store by the instances, so an
    // instance started after the wipe refuses the token too.
    assert_eq!(a.get("/profile").bearer(&revoked).send().status, 401);
    assert_eq!(b.get("/profile").bearer(&revoked).send().status, 401);
    assert!(eventually(Duration::from_secs(10), || redis
        .cli(&["ZSCORE", "portcullis:revoked", &sid(&revoked)])
        .trim()
        .parse::<u64>()
        .is_ok()));
    let c = TestGateway::start(&config);
    assert_eq!(c.get("/profile").bearer(&revoked).send().status, 401, "a new instance refuses a token revoked before the wipe");
    // Sessions are gone, and so are users created through the admin API: an access token lives
    // out its short life, but its refresh token no longer works and ends the session.
    assert_eq!(a.get("/profile").bearer(&live).send().status, 200, "an access token works until it expires");
    let r = refresh(&a, &live_refresh);
    assert_eq!(r.status, 401, "sessions are lost with the data");
    assert!(
        eventually(Duration::from_secs(5), || b.get("/profile").bearer(&live).send().status == 401),
        "the refresh of a lost user ended the session"
    );
    let r = a.request("POST", "/auth/login").json(&json!({"email": "wiped@example.com", "password": PASSWORD})).send();
    assert_eq!(r.status, 401);
    println!("== Redis restarted empty: ready again {recovered:?} after the restart; lost: sessions and admin-created users; revocations kept (written back)");
}

/// `portcullis check --connect` on the config at `path`.
fn check_connect(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    let text =
        config.replace("@LISTEN@", "127.0.0.1:1").replace("@ADMIN@", "127.0.0.1:2").replace("@DIR@", &dir.path().display().to_string());
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "--connect", "-c"])
        .arg(&path)
        .env("JWT_SECRET_KEY", common::TEST_SECRET)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_deployment_with_no_reachable_node_fails_check_connect_and_run_reports_not_ready() {
    let up = MockUpstream::start();
    let dead: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", common::free_port())).collect();
    let sentinel = format!("{{ backend: redis, redis: {{ mode: sentinel, sentinels: {dead:?}, master_name: portcullis }} }}");
    let (ok, out) = check_connect(&seed_config_with_store(&up.url(), &sentinel));
    assert!(!ok, "{out}");
    for a in &dead {
        assert!(out.contains(&format!("sentinel {a}:")), "every address tried is listed: {out}");
    }
    assert!(out.contains("no sentinel reachable"), "{out}");
    let cluster = format!("{{ backend: redis, redis: {{ mode: cluster, nodes: {dead:?} }} }}");
    let (ok, out) = check_connect(&seed_config_with_store(&up.url(), &cluster));
    assert!(!ok && out.contains(&format!("node {}:", dead[0])) && out.contains("no cluster node usable"), "{out}");

    // Reachable deployments pass.
    let redis = RedisServer::start();
    let (ok, out) = check_connect(&seed_config_with_store(&up.url(), &common::redis_store(&redis.url())));
    assert!(ok, "{out}");
    let sentinels = Sentinels::start(&redis, 1);
    let sentinel =
        format!("{{ backend: redis, redis: {{ mode: sentinel, sentinels: {:?}, master_name: portcullis }} }}", sentinels.addresses());
    let (ok, out) = check_connect(&seed_config_with_store(&up.url(), &sentinel));
    assert!(ok && out.contains(&format!("master `portcullis`: 127.0.0.1:{}", redis.port)), "{out}");
    let wrong = sentinel.replace("master_name: portcullis", "master_name: other");
    let (ok, out) = check_connect(&seed_config_with_store(&up.url(), &wrong));
    assert!(!ok && out.contains("does not know a master named `other`"), "{out}");

    // `run` starts anyway: alive, not ready, serving public routes, and it does not exit.
    let mut gw = TestGateway::start_unready(&seed_config_with_store(
        &up.url(),
        &format!("{{ backend: redis, redis: {{ mode: sentinel, sentinels: {dead:?}, master_name: portcullis }} }}"),
    ));
    assert_eq!(gw.admin_get("/healthz").status, 200);
    assert_eq!(gw.admin_get("/readyz").status, 503);
    assert_eq!(gw.get("/public/x").send().status, 200);
    assert_eq!(gw.metric("portcullis_store_up"), Some(0.0));
    assert_eq!(gw.wait_exit(Duration::from_secs(2)), None, "no crash loop");
}

#[test]
fn a_password_from_the_environment_logs_in_and_never_shows() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret-redis-pw"]);
    let up = MockUpstream::start();
    let store = format!("{{ backend: redis, redis: {{ mode: standalone, url: \"{}\", password_env: GW_REDIS_PASSWORD }} }}", redis.url());
    let config = seed_config_with_store(&up.url(), &store);
    let gw = TestGateway::start_with_env(&config, &[("GW_REDIS_PASSWORD", "s3cret-redis-pw")]);
    gw.create_user("auth@example.com", PASSWORD, "user");
    let (access, _) = login(&gw, "auth@example.com");
    assert_eq!(gw.get("/auth/sessions").bearer(&access).send().status, 200);
    // The wrong password: alive, not ready, and the password is in no log line.
    let bad = TestGateway::start_with_env_unready(&config, &[("GW_REDIS_PASSWORD", "wrong-password")]);
    assert_eq!(bad.admin_get("/readyz").status, 503);
    for log in [gw.log(), bad.log()] {
        assert!(!log.contains("s3cret-redis-pw") && !log.contains("wrong-password"), "no password in the logs");
    }
}

#[test]
fn cluster_slot_moves_are_followed_without_a_restart() {
    let cluster = RedisCluster::start();
    let up = MockUpstream::start();
    let store = format!("{{ backend: redis, redis: {{ mode: cluster, nodes: {:?} }} }}", cluster.addresses());
    let gw = TestGateway::start(&seed_config_with_store(&up.url(), &store));
    gw.create_user("moved@example.com", PASSWORD, "user");
    let (_, mut refresh_token) = login(&gw, "moved@example.com");
    // Move the users' slot (and with it the user) to another master, as a resharding would.
    let from = cluster.master_of("portcullis:{users}:all").unwrap();
    let to = (0..cluster.nodes.len()).find(|&i| i != from && cluster.nodes[i].cli(&["ROLE"]).starts_with("master")).unwrap();
    let slot = cluster.nodes[0].cli(&["CLUSTER", "KEYSLOT", "portcullis:{users}:all"]).trim().to_string();
    let id = |i: usize| cluster.nodes[i].cli(&["CLUSTER", "MYID"]).trim().to_string();
    let (from_id, to_id) = (id(from), id(to));
    cluster.nodes[to].cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
    cluster.nodes[from].cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
    let keys = cluster.nodes[from].cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
    for key in keys.lines().filter(|k| !k.is_empty()) {
        let out = cluster.nodes[from].cli(&["MIGRATE", "127.0.0.1", &cluster.nodes[to].port.to_string(), key, "0", "5000"]);
        assert!(out.contains("OK"), "{out}");
    }
    for i in 0..cluster.nodes.len() {
        cluster.nodes[i].cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
    assert_eq!(cluster.master_of("portcullis:{users}:all"), Some(to));
    // The gateway follows the MOVED redirects: the moved user logs in, refreshes and is found.
    for _ in 0..3 {
        let r = refresh(&gw, &refresh_token);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        refresh_token = r.json()["refresh_token"].as_str().unwrap().to_string();
    }
    let (access, _) = login(&gw, "moved@example.com");
    assert_eq!(gw.get("/auth/me").bearer(&access).send().status, 200);
}
