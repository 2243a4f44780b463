//! The security audit log: one JSON line per auth or access decision.
//!
//! Emitting never blocks the request path: events go into a bounded queue that a writer task
//! drains into the sink (stdout, a 0600 append-only file reopened on SIGHUP, or a Redis stream).
//! Nothing is lost while the sink keeps up; when it cannot, or is down, every lost event is
//! counted (`audit_dropped_total`) and logged. Events never hold a token, password, hash or key:
//! they are built from ids, names and fixed reason words only.

mod event;
mod sink;

pub use event::{Access, AccessDetails, AccessEvent, Details, Event, Line, Origin, Requirement};
pub use sink::{AuditSettings, AuditWriter, Sink};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// The emitting side: cheap to clone, never blocks. Each event is written into its JSON line
/// where it is emitted (so nothing it borrows is copied), and the line is queued.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Vec<u8>>,
    sample_granted: f64,
    granted_seen: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    metrics: Option<Arc<Metrics>>,
}

/// Room for a typical line (an access event is ~300-400 bytes), so it is written without
/// growing.
const LINE_CAPACITY: usize = 512;

/// A connected audit pipeline (None when no sink is configured).
pub fn pipeline(settings: &AuditSettings, metrics: Option<Arc<Metrics>>) -> Option<(Audit, AuditWriter)> {
    let sink = settings.sink.clone()?;
    let (tx, rx) = mpsc::channel(settings.queue_size.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let audit = Audit {
        tx,
        sample_granted: settings.sample_granted,
        granted_seen: Arc::new(AtomicU64::new(0)),
        dropped: dropped.clone(),
        metrics: metrics.clone(),
    };
    Some((audit, AuditWriter::new(rx, sink, dropped, metrics)))
}

/// Whether the `n`th granted event (0-based) is kept at `rate`: an even spread, no randomness.
pub fn keep_nth(n: u64, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
}

impl Audit {
    /// Queues an event's line; if the queue is full the event is counted as dropped.
    pub fn emit(&self, event: impl Line) {
        if let Some(m) = &self.metrics {
            m.ops.audit_event(event.kind());
        }
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        event.write_json(&mut line);
        if self.tx.try_send(line).is_err() {
            self.dropped(1);
        }
    }

    /// Queues a granted-access event, subject to sampling; the event is only built if kept.
    pub fn emit_granted<L: Line>(&self, event: impl FnOnce() -> L) {
        let n = self.granted_seen.fetch_add(1, Ordering::Relaxed);
        if keep_nth(n, self.sample_granted) {
            self.emit(event());
        }
    }

    fn dropped(&self, n: u64) {
        count_dropped(&self.dropped, self.metrics.as_deref(), n);
    }
}

fn count_dropped(total: &AtomicU64, metrics: Option<&Metrics>, n: u64) {
    let before = total.fetch_add(n, Ordering::Relaxed);
    if let Some(m) = metrics {
        m.ops.audit_dropped(n);
    }
    // Log the first loss and then every 1000th, so a flood of losses does not flood the log.
    if before == 0 || (before / 1000) != ((before + n) / 1000) {
        tracing::error!(dropped_total = before + n, "audit events lost: the audit sink cannot keep up or is down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn sampling_spreads_evenly() {
        assert_eq!((0..100).filter(|n| keep_nth(*n, 0.25)).count(), 25);
        assert_eq!((0..100).filter(|n| keep_nth(*n, 1.0)).count(), 100);
        assert_eq!((0..100).filter(|n| keep_nth(*n, 0.0)).count(), 0);
    }

    #[tokio::test]
    async fn a_full_queue_counts_what_it_drops() {
        let (audit, _writer) = pipeline(&AuditSettings { queue_size: 2, ..Default::default() }, None).unwrap();
        for _ in 0..5 {
            audit.emit(Event::new("access", "granted", None, Origin::default(), Value::Null));
        }
        assert_eq!(audit.dropped.load(Ordering::Relaxed), 3);
    }
}
