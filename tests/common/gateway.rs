//! A real `portcullis run` process on reserved loopback ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::client::{send_raw, Request};
use super::{eventually, free_port, TEST_SECRET};
use portcullis::auth::TokenManager;

/// A running gateway. Killed on drop.
pub struct TestGateway {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl TestGateway {
    /// Starts the gateway on `config` (with the harness placeholders filled in) and waits until
    /// its admin listener answers.
    pub fn start(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    /// As [`Self::start`], with extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_waiting(config, env, true)
    }

    /// As [`Self::start`], but only waits for the listeners, not for `/readyz` (a store that
    /// cannot be reached).
    pub fn start_unready(config: &str) -> Self {
        Self::start_waiting(config, &[], false)
    }

    /// [`Self::start_unready`] with extra environment variables.
    pub fn start_with_env_unready(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_waiting(config, env, false)
    }

    fn start_waiting(config: &str, env: &[(&str, &str)], ready: bool) -> Self {
        // A reserved port can be taken by another test process between reserving and binding:
        // then the gateway exits at once, and it is started again on other ports.
        for _ in 0..2 {
            match Self::try_start(config, env, ready) {
                Ok(gw) => return gw,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("portcullis exited at start:\n{log}"),
            }
        }
        Self::try_start(config, env, ready).unwrap_or_else(|log| panic!("portcullis exited at start:\n{log}"))
    }

    /// One attempt: the gateway, or its log if it exited before answering.
    fn try_start(config: &str, env: &[(&str, &str)], ready: bool) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, admin_port) = (free_port(), free_port());
        let text = config
            .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
            .replace("@ADMIN@", &format!("127.0.0.1:{admin_port}"))
            .replace("@DIR@", &dir.path().display().to_string());
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, text).expect("write config");
        let log_path = dir.path().join("gateway.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.arg("run")
            .arg("-c")
            .arg(&config_path)
            .env_remove("ACCESS_TOKEN_EXPIRE_MINUTES")
            .env_remove("REFRESH_TOKEN_EXPIRE_DAYS")
            .env("JWT_SECRET_KEY", TEST_SECRET)
            .env("RUST_LOG", "debug")
            // Lets a test move the gateway's clock forward (debug builds only; see src/clock.rs).
            .env("PORTCULLIS_TEST_CLOCK", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn portcullis");
        let mut gw = TestGateway {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            config_path,
            log_path,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            dir,
        };
        let mut exited = None;
        let up = eventually(Duration::from_secs(30), || {
            if let Ok(Some(status)) = gw.child.try_wait() {
                exited = Some(status);
                return true;
            }
            std::net::TcpStream::connect(gw.admin).is_ok()
                && std::net::TcpStream::connect(gw.addr).is_ok()
                && (!ready || gw.admin_get("/readyz").status == 200)
        });
        if let Some(status) = exited {
            return Err(format!("exit {status}:\n{}", gw.log()));
        }
        assert!(up, "portcullis did not start:\n{}", gw.log());
        Ok(gw)
    }

    /// A request to the proxy listener.
    pub fn request(&self, method: &str, target: &str) -> Request {
        Request::new(self.addr, method, target)
    }

    /// `GET target` on the proxy listener.
    pub fn get(&self, target: &str) -> Request {
        self.request("GET", target)
    }

    /// `GET path` on the admin listener.
    pub fn admin_get(&self, path: &str) -> super::Reply {
        send_raw(self.admin, &Request::new(self.admin, "GET", path).to_bytes())
    }

    /// Moves the gateway's wall clock forward by `seconds` (budget windows, expiries, Retry-After
    /// all follow it): a test sees a window turn without waiting for it.
    pub fn advance_clock(&self, seconds: u64) {
        let r = send_raw(self.admin, &Request::new(self.admin, "POST", &format!("/test/clock?advance_seconds={seconds}")).to_bytes());
        assert_eq!(r.status, 200, "the test clock moved: {}", String::from_utf8_lossy(&r.body));
    }

    /// A token manager with the gateway's settings (same secret), to mint test tokens.
    pub fn tokens(&self) -> TokenManager {
        let env = |name: &str| {
            if name == "JWT_SECRET_KEY" {
                return Some(TEST_SECRET.to_string());
            }
            self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        };
        let config = portcullis::config::parse(&std::fs::read_to_string(&self.config_path).expect("config"), &self.config_path, &env)
            .expect("test config is valid");
        TokenManager::new(&config.tokens)
    }

    /// An access token for `role`.
    pub fn token(&self, user_id: &str, role: &str) -> String {
        self.tokens().create_access_token(user_id, role, "test-session").expect("token")
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The scratch directory of this gateway.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the gateway process.
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let start = std::time::Instant::now();
        while start.elapsed() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Rewrites the config file (harness placeholders filled in as at start).
    pub fn rewrite_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config_path).expect("config");
        let new = edit(text);
        // Write then rename, as editors and config management do, so a reader never sees half.
        let tmp = self.dir.path().join("gateway.yaml.tmp");
        std::fs::write(&tmp, new).expect("write config");
        std::fs::rename(&tmp, &self.config_path).expect("replace config");
    }

    /// The value of one metric sample line (exact series), if exported.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = String::from_utf8_lossy(&self.admin_get("/metrics").body).into_owned();
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
    }

    /// Creates a user through the admin API (with an operator-minted admin token); its id.
    pub fn create_user(&self, email: &str, password: &str, role: &str) -> String {
        let admin = self.token("operator", "admin");
        let body = serde_json::json!({"email": email, "password": password, "role": role});
        let r = self.request("POST", "/admin/users").bearer(&admin).json(&body).send();
        assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
        r.json()["id"].as_str().expect("a user id").to_string()
    }

    /// The audit events in `audit.log` of the gateway's directory (`audit: { sink: file, file: audit.log }`).
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        super::audit_lines(&self.dir().join("audit.log"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
