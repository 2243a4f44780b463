//! Password hashing (argon2id) and the password policy.
//!
//! Hashing is deliberately expensive, so it never runs on the proxy's worker threads: each hash
//! or verification runs on one of `max_concurrent` dedicated threads, with at most `max_queue`
//! waiting. Those threads run at the lowest CPU priority the OS offers an unprivileged process
//! (SCHED_IDLE on Linux: any proxy thread that wakes up preempts them at once; nice 19 only
//! lowers their share and, under EEVDF, still lets them finish a slice first, which showed as
//! +0.9 ms on proxied p99). A login flood so uses the CPU that proxied traffic leaves idle
//! instead of taking turns with it; beyond the queue, logins get 503 busy.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Argon2id cost and the policy for new passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub min_length: usize,
    pub max_concurrent: usize,
    pub max_queue: usize,
}

impl Default for PasswordSettings {
    /// OWASP's argon2id recommendation: m = 19 MiB, t = 2, p = 1.
    fn default() -> Self {
        PasswordSettings { memory_kib: 19 * 1024, iterations: 2, parallelism: 1, min_length: 12, max_concurrent: 1, max_queue: 64 }
    }
}

/// Why hashing or verifying did not happen.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("too many password operations are waiting")]
    Busy,
    #[error("password hashing failed")]
    Internal,
}

/// Why a new password was refused (the message names the rule).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the password must be at least {0} characters long")]
    TooShort(usize),
    #[error("the password must not be the email address")]
    IsEmail,
    #[error("the password must not be longer than 1024 bytes")]
    TooLong,
}

/// Hashes and verifies passwords off the request threads.
pub struct Passwords {
    argon: Argon2<'static>,
    /// Jobs for the hashing threads; they exit when this (the only sender) is dropped.
    jobs: Sender<Job>,
    /// Jobs queued or running, at most `capacity` (`max_concurrent + max_queue`).
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
    min_length: usize,
    /// A hash of a random password with the same cost, verified when the email is unknown so
    /// that unknown users and wrong passwords take the same time.
    dummy_hash: String,
}

/// Whether `phc` is an argon2 PHC string this gateway can verify.
pub fn is_argon2_hash(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| matches!(h.algorithm.as_str(), "argon2id" | "argon2i" | "argon2d"))
}

impl Passwords {
    /// Builds the hasher (computing one dummy hash with the configured cost).
    pub fn new(s: &PasswordSettings) -> Result<Self, PasswordError> {
        let params = Params::new(s.memory_kib, s.iterations, s.parallelism, None).map_err(|_| PasswordError::Internal)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = hash_with(&argon, &crate::ids::new_id())?;
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = s.max_concurrent.max(1);
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("portcullis-argon2-{i}"))
                .spawn(move || hashing_thread(&queue))
                .map_err(|_| PasswordError::Internal)?;
        }
        Ok(Passwords {
            argon,
            jobs,
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity: threads + s.max_queue,
            min_length: s.min_length,
            dummy_hash,
        })
    }

    /// Checks a new password against the policy.
    pub fn check_policy(&self, password: &str, email: &str) -> Result<(), PolicyError> {
        if password.chars().count() < self.min_length {
            return Err(PolicyError::TooShort(self.min_length));
        }
        if password.len() > 1024 {
            return Err(PolicyError::TooLong);
        }
        if password.trim().eq_ignore_ascii_case(email.trim()) {
            return Err(PolicyError::IsEmail);
        }
        Ok(())
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let argon = self.argon.clone();
        self.bounded(move || hash_with(&argon, &password)).await?
    }

    /// Whether `password` matches `phc`; with no hash (unknown user) the dummy hash is verified
    /// and the answer is false, taking the same time.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, PasswordError> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy_hash.clone());
        let argon = self.argon.clone();
        let ok = self
            .bounded(move || match PasswordHash::new(&phc) {
                // The hash's own parameters are used, so older or stronger hashes still verify.
                Ok(parsed) => argon.verify_password(password.as_bytes(), &parsed).is_ok(),
                Err(_) => false,
            })
            .await?;
        Ok(known && ok)
    }

    /// Runs `work` on a hashing thread; `Busy` at once when `max_queue` jobs already wait.
    async fn bounded<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, PasswordError> {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(PasswordError::Busy);
        }
        // The count drops when the job is dropped: after it ran, panicked, or was never run.
        let slot = InFlight(self.in_flight.clone());
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let out = work();
            drop(slot); // before answering, so that the caller's next job finds room
            let _ = reply.send(out);
        });
        self.jobs.send(job).map_err(|_| PasswordError::Internal)?;
        answer.await.map_err(|_| PasswordError::Internal)
    }
}

type Job = Box<dyn FnOnce() + Send>;

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One hashing thread: lowest priority, then jobs until the `Passwords` is dropped. A job that
/// panics drops its reply (the caller gets `Internal`) and the thread goes on.
fn hashing_thread(queue: &Mutex<Receiver<Job>>) {
    lower_own_priority();
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

/// SCHED_IDLE (and nice 19, where that is refused) for the calling thread only: Linux
/// schedules threads separately. Lowering needs no privilege.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // two libc calls on the calling thread; see SAFETY below
fn lower_own_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: syscalls on the calling thread (id 0 / its own tid); `param` outlives the call.
    unsafe {
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_own_priority() {}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon.hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|_| PasswordError::Internal)
}

/// Hashes a password synchronously (for `portcullis hash-password`).
pub fn hash_blocking(s: &PasswordSettings, password: &str) -> Result<String, PasswordError> {
    let params = Params::new(s.memory_kib, s.iterations, s.parallelism, None).map_err(|_| PasswordError::Internal)?;
    hash_with(&Argon2::new(Algorithm::Argon2id, Version::V0x13, params), password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordSettings {
        PasswordSettings { memory_kib: 1024, iterations: 1, ..PasswordSettings::default() }
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let p = Passwords::new(&cheap()).unwrap();
        let h = p.hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{h}");
        assert!(is_argon2_hash(&h));
        assert!(p.verify("correct horse battery".into(), Some(h.clone())).await.unwrap());
        assert!(!p.verify("wrong".into(), Some(h)).await.unwrap());
        assert!(!p.verify("anything".into(), None).await.unwrap());
        assert!(!p.verify("x".into(), Some("not a hash".into())).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_with_other_parameters_still_verify() {
        let other =
            hash_blocking(&PasswordSettings { memory_kib: 2048, iterations: 3, parallelism: 2, ..cheap() }, "pw-from-elsewhere").unwrap();
        let p = Passwords::new(&cheap()).unwrap();
        assert!(p.verify("pw-from-elsewhere".into(), Some(other)).await.unwrap());
    }

    #[test]
    fn the_default_cost_is_owasps() {
        let h = hash_blocking(&PasswordSettings::default(), "x").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    }

    #[test]
    fn policy_names_the_rule() {
        let p = Passwords::new(&cheap()).unwrap();
        assert_eq!(p.check_policy("short", "a@b.c"), Err(PolicyError::TooShort(12)));
        assert_eq!(p.check_policy("alice@example.com", "Alice@Example.com"), Err(PolicyError::IsEmail));
        assert_eq!(p.check_policy(&"x".repeat(2000), "a@b.c"), Err(PolicyError::TooLong));
        assert_eq!(p.check_policy("a long enough passphrase", "a@b.c"), Ok(()));
        assert!(PolicyError::TooShort(12).to_string().contains("at least 12"));
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once_and_work_goes_on_after() {
        // No queue, one thread: while it is held busy, a second job is refused, not queued.
        let p = Arc::new(Passwords::new(&PasswordSettings { max_queue: 0, ..cheap() }).unwrap());
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let busy = p.clone();
        let running = tokio::spawn(async move {
            busy.bounded(move || {
                let _ = started_tx.send(());
                let _ = held.recv();
            })
            .await
        });
        started.await.unwrap();
        assert_eq!(p.verify("x".into(), None).await, Err(PasswordError::Busy));
        release.send(()).unwrap();
        running.await.unwrap().unwrap();
        assert_eq!(p.verify("x".into(), None).await, Ok(false));
        assert_eq!(p.in_flight.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_internal_error_and_the_thread_survives() {
        let p = Passwords::new(&cheap()).unwrap();
        assert_eq!(p.bounded(|| -> u8 { panic!("boom") }).await, Err(PasswordError::Internal));
        assert_eq!(p.verify("x".into(), None).await, Ok(false));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    #[allow(unsafe_code)] // reads the scheduling policy through libc
    async fn hashing_threads_run_at_idle_priority_and_callers_do_not() {
        let p = Passwords::new(&cheap()).unwrap();
        // SAFETY: reads the calling thread's own scheduling policy.
        let policy = p.bounded(|| unsafe { libc::sched_getscheduler(0) }).await;
        assert_eq!(policy, Ok(libc::SCHED_IDLE));
        assert_ne!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_IDLE);
    }

    #[test]
    fn foreign_hashes_are_not_argon2() {
        assert!(!is_argon2_hash("$2b$12$abcdefghijklmnopqrstuv"));
        assert!(!is_argon2_hash("plaintext"));
    }
}
