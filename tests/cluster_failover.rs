//! Redis Cluster failover the way production meets it: two gateways on a six-node cluster
//! (three masters, three replicas, `cluster-node-timeout 2000`), the masters as the only seeds,
//! API rate limits synchronising through the store every 100 ms, and steady proxied load from
//! rotating users on both instances. Each master is killed in turn and restarted (it rejoins as
//! a replica of its successor), then a replica is killed; another cluster is given a single seed
//! and that seed is killed. After each fault the store must serve again on every instance:
//! logins, refreshes of sessions made before the fault, revocations that reach the other
//! instance through pub/sub, rate limits shared across instances, and `/readyz`. The recovery
//! time after the promotion is printed (run with `--no-capture`).
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;
use common::redis::RedisCluster;
use common::{eventually, MockUpstream, Reply, TestGateway};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const PASSWORD: &str = "failover-password-123";
/// The shared route limit the sharing check spends (per user, across both instances).
const TIGHT: u64 = 20;
/// How long after the promotion every store operation must work again. The target is 5 s; the
/// deadline leaves room for a loaded machine, and the measured time is printed. The figure is
/// an upper bound: an attempt that was in flight at the promotion fails only at the store's
/// 2 s timeout, and the next attempt of its stream starts then.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(10);
/// How long the login streams are watched for their recovery. Longer than the deadline: the
/// recovery is when a stream's first good attempt *started*, and the attempts that prove it
/// (two in a row on each of 16 streams) wait their turn at the hashing threads, which run at
/// idle priority behind the proxied load. The deadline is asserted on the measured time.
const OBSERVE_FOR: Duration = Duration::from_secs(60);

fn config(upstream: &str, seeds: &[String]) -> String {
    Config::seed(upstream)
        .set("store", &format!("{{ backend: redis, redis: {{ mode: cluster, nodes: {seeds:?} }} }}"))
        // Reconciliation once an hour: a revocation that reaches the other instance in seconds
        // came through pub/sub.
        .set("sessions", "{ activity_flush_seconds: 3600 }")
        // The test is about the store: cheap hashes keep the 16 login streams from queueing
        // for seconds at the idle-priority hashing threads behind the proxied load.
        .set("passwords", "{ memory_kib: 256, iterations: 1, parallelism: 1, max_concurrent: 2, max_queue: 64 }")
        .set("rate_limits", &format!("{{ api: {{ per_user: {{ requests: 1000000, per_seconds: 60 }} }}, routes: {{ tight: {{ requests: {TIGHT}, per_seconds: 60 }} }} }}"))
        .add_route("{ name: tight, path: /tight, require_role: guest, upstream: app, rate_limit: tight }")
        .yaml()
}

fn login(gw: &TestGateway, email: &str) -> Reply {
    gw.request("POST", "/auth/login").json(&json!({"email": email, "password": PASSWORD})).send()
}

fn tokens_of(r: &Reply) -> (String, String) {
    let v = r.json();
    (v["access_token"].as_str().unwrap().into(), v["refresh_token"].as_str().unwrap().into())
}

fn refresh(gw: &TestGateway, token: &str) -> Reply {
    gw.request("POST", "/auth/refresh").json(&json!({"refresh_token": token})).send()
}

/// Steady proxied load on both instances (20 users in rotation, each request counted by the
/// per-user limit, so the windows sync every 100 ms) until `stop`; counts failures.
fn steady_load<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    gws: [&'s TestGateway; 2],
    stop: &'s AtomicBool,
    failed: &'s AtomicUsize,
    sent: &'s AtomicUsize,
) {
    for (i, gw) in gws.into_iter().enumerate() {
        let tokens: Vec<String> = (0..20).map(|u| gw.token(&format!("load-{i}-{u}"), "user")).collect();
        scope.spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let status = gw.get("/profile").bearer(&tokens[n % tokens.len()]).send().status;
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                if status != 200 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                // Pacing of the load, not a wait for an effect.
                std::thread::sleep(Duration::from_millis(2));
            }
        });
    }
}

/// A session made before a fault, to be refreshed after it.
struct Kept {
    refresh: String,
}

/// Two gateways on one cluster with users to sign in as.
struct Rig {
    a: TestGateway,
    b: TestGateway,
    round: usize,
}

impl Rig {
    fn start(upstream: &MockUpstream, seeds: &[String]) -> Rig {
        let text = config(&upstream.url(), seeds);
        let rig = Rig { a: TestGateway::start(&text), b: TestGateway::start(&text), round: 0 };
        for i in 0..8 {
            rig.a.create_user(&format!("u{i}@example.com"), PASSWORD, "user");
        }
        rig
    }

    /// Sessions on every user (so on every slot the sessions land in), made before a fault.
    fn keep_sessions(&self) -> Vec<Kept> {
        (0..8)
            .map(|i| {
                let r = login(&self.a, &format!("u{i}@example.com"));
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                Kept { refresh: tokens_of(&r).1 }
            })
            .collect()
    }

    /// When logins work again: every user (so every slot their sessions land in) logs in over
    /// and over on both instances, one stream of attempts each, until every stream has had two
    /// successes in a row. A stream recovered when its first attempt after its last failure
    /// started (a failed attempt lasts as long as the store's timeout, so its end would
    /// overstate the recovery); the store recovered when the last stream did.
    fn logins_work(&self, observe_for: Duration) -> Result<Instant, String> {
        type Stream = std::sync::Mutex<Vec<(Instant, bool)>>;
        let last_failure = std::sync::Mutex::new(String::new());
        let streams: Vec<(&TestGateway, String, Stream)> = [&self.a, &self.b]
            .into_iter()
            .flat_map(|gw| (0..8).map(move |i| (gw, format!("u{i}@example.com"), Stream::default())))
            .collect();
        let recovered = |attempts: &[(Instant, bool)]| {
            let after_failure = attempts.iter().rposition(|(_, ok)| !ok).map_or(0, |i| i + 1);
            (attempts.len() >= after_failure + 2).then(|| attempts[after_failure].0)
        };
        let stop = AtomicBool::new(false);
        let done = std::thread::scope(|s| {
            for (gw, email, attempts) in &streams {
                let (stop, last_failure) = (&stop, &last_failure);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let at = Instant::now();
                        let r = login(gw, email);
                        let ok = r.status == 200;
                        if !ok {
                            *last_failure.lock().unwrap() =
                                format!("{email}: {} after {:?}: {}", r.status, at.elapsed(), String::from_utf8_lossy(&r.body));
                        }
                        attempts.lock().unwrap().push((at, ok));
                    }
                });
            }
            let done = eventually(observe_for, || streams.iter().all(|(_, _, a)| recovered(&a.lock().unwrap()).is_some()));
            stop.store(true, Ordering::Relaxed);
            done
        });
        let at = done.then(|| streams.iter().filter_map(|(_, _, a)| recovered(&a.lock().unwrap())).max()).flatten();
        at.ok_or_else(|| {
            let pending: Vec<String> = streams
                .iter()
                .filter(|(_, _, a)| recovered(&a.lock().unwrap()).is_none())
                .map(|(_, email, a)| format!("{email} ({} attempts)", a.lock().unwrap().len()))
                .collect();
            format!("not recovered: {}; the last failure: {}", pending.join(", "), last_failure.lock().unwrap())
        })
    }

    /// The store's log lines of both instances, for a failure message.
    fn store_log(&self) -> String {
        let mut out = String::new();
        for (name, gw) in [("A", &self.a), ("B", &self.b)] {
            let log = gw.log();
            let mut lines: Vec<&str> = log.lines().filter(|l| l.contains("redis") || l.contains("store") || l.contains("luster")).collect();
            // One line of each run of the same message (the driver repeats its reconnects).
            let message = |l: &str| l.split_once(' ').map_or(l, |(_, rest)| rest).to_string();
            lines.dedup_by(|later, earlier| message(later) == message(earlier));
            out += &format!("instance {name}'s store log lines, last 40:\n{}\n", lines[lines.len().saturating_sub(40)..].join("\n"));
        }
        out
    }

    /// Everything the store does works on both instances.
    fn assert_store_works(&mut self, kept: &mut [Kept], what: &str) {
        self.round += 1;
        let (a, b) = (&self.a, &self.b);
        // Refreshes of the sessions made before the fault, on both instances.
        for (i, k) in kept.iter_mut().enumerate() {
            let gw = if i % 2 == 0 { a } else { b };
            let r = refresh(gw, &k.refresh);
            assert_eq!(
                r.status,
                200,
                "{what}: a session from before the fault refreshes: {}\n{}",
                String::from_utf8_lossy(&r.body),
                self.store_log()
            );
            k.refresh = tokens_of(&r).1;
        }
        // A logout on one instance reaches the other through pub/sub (reconciliation is hourly).
        for (from, to) in [(a, b), (b, a)] {
            let r = login(from, "u0@example.com");
            assert_eq!(r.status, 200, "{what}");
            let (access, _) = tokens_of(&r);
            assert_eq!(to.get("/profile").bearer(&access).send().status, 200);
            assert_eq!(from.request("POST", "/auth/logout").bearer(&access).send().status, 200, "{what}: logout");
            assert!(
                eventually(Duration::from_secs(5), || to.get("/profile").bearer(&access).send().status == 401),
                "{what}: the other instance learned of the logout through pub/sub"
            );
        }
        // Rate limits are shared: a fresh user spends the route's limit across both instances,
        // no more (each instance alone would admit only its share without the store) and no
        // less (a sync that fails leaves each instance its first half share: 10 in all).
        let user = format!("limited-{}", self.round);
        let (ta, tb) = (a.token(&user, "user"), b.token(&user, "user"));
        let mut admitted = 0u64;
        let start = Instant::now();
        while admitted < TIGHT && start.elapsed() < Duration::from_secs(10) {
            admitted += u64::from(a.get("/tight").bearer(&ta).send().status == 200);
            admitted += u64::from(b.get("/tight").bearer(&tb).send().status == 200);
            // Pacing: a sync every 100 ms hands each instance its next share.
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!((TIGHT..=TIGHT + 2).contains(&admitted), "{what}: the limit is shared across instances: {admitted} of {TIGHT} admitted");
        assert!(
            eventually(Duration::from_secs(3), || a.get("/tight").bearer(&ta).send().status == 429
                && b.get("/tight").bearer(&tb).send().status == 429),
            "{what}: both instances refuse once the shared limit is spent"
        );
        for gw in [a, b] {
            assert_eq!(gw.admin_get("/readyz").status, 200, "{what}: ready");
        }
    }
}

/// Kills node `victim`, waits for its replica's promotion, and measures how long after it the
/// store serves logins on both instances again; then checks everything else the store does.
fn kill_and_recover(cluster: &mut RedisCluster, rig: &mut Rig, victim: usize, what: &str) -> Duration {
    let mut kept = rig.keep_sessions();
    let port = cluster.nodes[victim].port;
    let stop = AtomicBool::new(false);
    let (failed, sent) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let (fault_at, promoted_at, recovered_at) = std::thread::scope(|s| {
        steady_load(s, [&rig.a, &rig.b], &stop, &failed, &sent);
        // Let the load and the syncs run before the fault.
        assert!(eventually(Duration::from_secs(5), || sent.load(Ordering::Relaxed) > 200));
        let fault_at = Instant::now();
        cluster.nodes[victim].kill();
        let promoted = eventually(Duration::from_secs(30), || cluster.took_over_from(port));
        let promoted_at = Instant::now();
        let recovered_at = rig.logins_work(OBSERVE_FOR);
        stop.store(true, Ordering::Relaxed);
        assert!(promoted, "{what}: the cluster took over from the killed node");
        (fault_at, promoted_at, recovered_at)
    });
    let recovered_at = recovered_at.unwrap_or_else(|why| {
        // The reason first: a long log after it may be cut from the report.
        eprintln!("{what}: {why}\n{}", rig.store_log());
        panic!("{what}: logins did not work again within {OBSERVE_FOR:?} of the promotion: {why}")
    });
    let recovery = recovered_at.saturating_duration_since(promoted_at);
    if recovery > RECOVERY_DEADLINE {
        eprintln!("{what}: recovered after {recovery:?}\n{}", rig.store_log());
        panic!("{what}: logins worked again {recovery:?} after the promotion, later than {RECOVERY_DEADLINE:?}");
    }
    println!(
        "== {what}: promotion {:?} after the kill; logins on both instances {:?} after the promotion; proxied {} failed of {}",
        promoted_at - fault_at,
        recovery,
        failed.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "{what}: proxied requests are decided from local views and never fail");
    rig.assert_store_works(&mut kept, what);
    recovery
}

#[test]
fn every_master_killed_in_turn_under_load_and_restarted_as_a_replica() {
    let mut cluster = RedisCluster::start_with_node_timeout(2000);
    let up = MockUpstream::start();
    let masters = cluster.masters();
    let seeds: Vec<String> = masters.iter().map(|&i| format!("127.0.0.1:{}", cluster.nodes[i].port)).collect();
    let mut rig = Rig::start(&up, &seeds);
    let mut kept = rig.keep_sessions();
    rig.assert_store_works(&mut kept, "before any fault");

    for (n, &victim) in masters.iter().enumerate() {
        let what = format!("master {} of 3 (port {}) killed", n + 1, cluster.nodes[victim].port);
        kill_and_recover(&mut cluster, &mut rig, victim, &what);
        // The killed master comes back and rejoins as a replica of the node that replaced it.
        cluster.nodes[victim].restart();
        assert!(
            eventually(Duration::from_secs(30), || cluster.nodes[victim].cli(&["ROLE"]).starts_with("slave") && cluster.replicas_synced()),
            "{what}: the old master rejoined as a replica"
        );
        let mut kept = rig.keep_sessions();
        rig.assert_store_works(&mut kept, &format!("{what}, then restarted as a replica"));
    }

    // A replica killed: nothing is promoted, nothing may stop working.
    let replica = cluster.replicas()[0];
    cluster.nodes[replica].kill();
    let mut kept = rig.keep_sessions();
    rig.assert_store_works(&mut kept, "a replica killed");
}

#[test]
fn the_only_seed_killed_under_load() {
    let mut cluster = RedisCluster::start_with_node_timeout(2000);
    let up = MockUpstream::start();
    let victim = cluster.masters()[0];
    let seeds = vec![format!("127.0.0.1:{}", cluster.nodes[victim].port)];
    let mut rig = Rig::start(&up, &seeds);
    kill_and_recover(&mut cluster, &mut rig, victim, "the single configured seed (a master) killed");
    // A gateway started now, with its only seed dead, is not ready and says so; the running
    // ones keep working from the topology they learned.
    let late = TestGateway::start_unready(&config(&up.url(), &seeds));
    assert_eq!(late.admin_get("/readyz").status, 503, "no seed answers: not ready");
    let mut kept = rig.keep_sessions();
    rig.assert_store_works(&mut kept, "after the seed's death");
}
