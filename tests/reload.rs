//! Hot reload of gateway.yaml under load, refusal of a broken file, and graceful shutdown.
#![allow(clippy::unwrap_used)] // test code: a panic is a failed test with its reason

mod common;

use common::config::Config;

use common::{seed_config, MockUpstream, TestGateway};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VIEWER_READS: &str = "viewer: [read]";
const VIEWER_NOTHING: &str = "viewer: []";

#[test]
fn a_changed_permission_matrix_takes_effect_under_load_without_a_failed_request() {
    let up = MockUpstream::start();
    let gw = Arc::new(TestGateway::start(&seed_config(&up.url())));
    let viewer = gw.token("v", "viewer");
    assert_eq!(gw.get("/projects/1").bearer(&viewer).send().status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, denied, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (gw, viewer, stop, ok, denied, failed) =
                (gw.clone(), viewer.clone(), stop.clone(), ok.clone(), denied.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match gw.get("/projects/1").bearer(&viewer).send().status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        403 => denied.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    assert_eventually!(ok.load(Ordering::Relaxed) > 0, "load is running");
    gw.rewrite_config(|t| t.replacen(VIEWER_READS, VIEWER_NOTHING, 1));
    gw.signal("HUP");
    let reloaded_at = Instant::now();
    let took_effect = common::eventually(Duration::from_secs(5), || gw.get("/projects/1").bearer(&viewer).send().status == 403);
    let effect_delay = reloaded_at.elapsed();
    let denied_now = denied.load(Ordering::Relaxed);
    assert_eventually!(denied.load(Ordering::Relaxed) > denied_now, "load goes on under the new rule");
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let (ok, denied, failed) = (ok.load(Ordering::Relaxed), denied.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "reload under load: {ok} allowed before, {denied} denied after, {failed} failed; new rule in force {effect_delay:?} after SIGHUP"
    );
    assert!(took_effect, "the new rule never took effect");
    assert_eq!(failed, 0, "requests failed during the reload");
    assert!(ok > 0 && denied > 0, "both rules were seen: {ok} / {denied}");
    assert_eq!(gw.metric(r#"portcullis_config_reloads_total{result="success"}"#), Some(1.0));
}

#[test]
fn a_broken_file_is_refused_and_the_running_config_stays() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    let viewer = gw.token("v", "viewer");
    gw.rewrite_config(|t| t.replacen(VIEWER_READS, VIEWER_NOTHING, 1).replacen("threads: 2", "thredas: 2", 1));
    gw.signal("HUP");
    assert_eventually!(gw.metric(r#"portcullis_config_reloads_total{result="error"}"#) == Some(1.0), "the refusal is counted");
    assert_eq!(gw.get("/projects/1").bearer(&viewer).send().status, 200, "the old matrix stays in force");
    let log = gw.log();
    assert!(log.contains("gateway.yaml:5:3: server.thredas: unknown key `thredas` (did you mean `threads`?)"), "{log}");
    assert!(log.contains("config reload refused"));
}

#[test]
fn a_file_change_alone_reloads_and_restart_only_settings_are_reported() {
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    let viewer = gw.token("v", "viewer");
    gw.rewrite_config(|t| t.replacen(VIEWER_READS, VIEWER_NOTHING, 1).replacen("threads: 2", "threads: 3", 1));
    assert_eventually!(gw.get("/projects/1").bearer(&viewer).send().status == 403, "the watcher picked the change up");
    assert_eventually!(gw.log().contains("setting=\"server.threads\""), "the restart-only change is reported");
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    let up = MockUpstream::start();
    let config =
        Config::seed(&up.url()).set("server.grace_period_seconds", "2").set("server.graceful_shutdown_timeout_seconds", "2").yaml();
    let mut gw = TestGateway::start(&config);
    up.set_delay(Duration::from_millis(800));
    let addr = gw.addr;
    let in_flight = std::thread::spawn(move || common::Request::new(addr, "GET", "/public/slow").send().status);
    assert_eventually!(up.hits() == 1, "the slow request reached the upstream");
    gw.signal("TERM");
    assert_eq!(in_flight.join().unwrap(), 200, "the in-flight request finished");
    assert_eventually!(std::net::TcpStream::connect(addr).is_err(), "no new connections are accepted while draining");
    assert_eq!(gw.wait_exit(Duration::from_secs(15)), Some(0));
}

/// A Kubernetes ConfigMap update: the kubelet writes a new timestamped directory and swaps the
/// `..data` symlink; the file the gateway was started with is a symlink through `..data` and is
/// never written. The gateway follows that exact swap without a restart.
#[test]
fn a_configmap_update_by_symlink_swap_is_reloaded() {
    use std::os::unix::fs::symlink;
    let up = MockUpstream::start();
    let gw = TestGateway::start(&seed_config(&up.url()));
    let dir = gw.dir().to_path_buf();
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    // The kubelet's layout, with the content the gateway runs.
    let v1 = "..2026_11_29_10_00_00.000000001";
    std::fs::create_dir(dir.join(v1)).unwrap();
    std::fs::write(dir.join(v1).join("gateway.yaml"), &text).unwrap();
    symlink(v1, dir.join("..data")).unwrap();
    symlink("..data/gateway.yaml", dir.join("gateway.yaml.link")).unwrap();
    std::fs::rename(dir.join("gateway.yaml.link"), &gw.config_path).unwrap();
    assert!(std::fs::symlink_metadata(&gw.config_path).unwrap().file_type().is_symlink());
    // A non-event has no event to wait for: watch through more than one check (every second).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(gw.metric(r#"portcullis_config_reloads_total{result="success"}"#).unwrap_or(0.0), 0.0, "same content: nothing to reload");
    assert_eq!(gw.get("/extra/page").send().status, 404);
    // The update: a new directory, `..data` swapped atomically, the old directory removed.
    let v2 = "..2026_11_29_10_05_00.000000002";
    std::fs::create_dir(dir.join(v2)).unwrap();
    let updated = text.replace("routes:\n", "routes:\n  - { name: extra, path: \"/extra/**\", public: true, upstream: app }\n");
    assert_ne!(updated, text);
    std::fs::write(dir.join(v2).join("gateway.yaml"), &updated).unwrap();
    symlink(v2, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join(v1)).unwrap();
    assert_eventually!(gw.get("/extra/page").send().status == 200, "the new route is served");
    assert_eq!(gw.metric(r#"portcullis_config_reloads_total{result="success"}"#), Some(1.0));
}
