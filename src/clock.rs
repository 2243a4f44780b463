//! The wall clock, in the two units the gateway stores: seconds and milliseconds since the Unix
//! epoch. A leaf: code that needs "now" asks here, and pure code takes `now` as a parameter so
//! tests can pass any instant.
//!
//! Debug builds only: when the process starts with `PORTCULLIS_TEST_CLOCK=1`, the admin
//! listener's `POST /test/clock?advance_seconds=N` moves this clock forward, so end-to-end tests
//! see a budget window turn or a token expire without waiting for it. Release builds have no
//! offset and no endpoint (the code is compiled out).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    real + test::offset_ms()
}

#[cfg(debug_assertions)]
pub mod test {
    use std::sync::atomic::{AtomicU64, Ordering};

    static OFFSET_MS: AtomicU64 = AtomicU64::new(0);

    /// Whether this process lets tests move its clock (`PORTCULLIS_TEST_CLOCK=1`).
    pub fn enabled() -> bool {
        std::env::var_os("PORTCULLIS_TEST_CLOCK").is_some_and(|v| v == "1")
    }

    pub fn offset_ms() -> u64 {
        OFFSET_MS.load(Ordering::Relaxed)
    }

    /// Moves the clock forward; returns the total offset in seconds.
    pub fn advance(seconds: u64) -> u64 {
        let by = seconds.saturating_mul(1000);
        OFFSET_MS.fetch_add(by, Ordering::Relaxed).saturating_add(by) / 1000
    }
}

#[cfg(not(debug_assertions))]
pub mod test {
    #[inline(always)]
    pub fn offset_ms() -> u64 {
        0
    }
}
