//! The repo's mock LLM provider (`examples/mock_llm.rs`, the one the demo runs), served in this
//! test process so a test can make it fail and read which models it was asked for.

#[path = "../../examples/mock_llm.rs"]
#[allow(dead_code, clippy::unwrap_used)]
mod mock_llm;

pub use mock_llm::{Mode, WORDS};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A running mock provider.
pub struct MockLlm {
    mock: Arc<mock_llm::Mock>,
    pub port: u16,
}

impl MockLlm {
    pub fn start(mode: Mode) -> Self {
        Self::start_paced(mode, std::time::Duration::from_millis(20))
    }

    /// A mock whose streams pause `pace` between events.
    pub fn start_paced(mode: Mode, pace: std::time::Duration) -> Self {
        let mut mock = mock_llm::Mock::new(mode);
        if let Some(m) = Arc::get_mut(&mut mock) {
            m.pace = pace;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let m = mock.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let _ = mock_llm::serve(listener, m).await;
            });
        });
        MockLlm { mock, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answer every completion with `status` (0: answer normally).
    pub fn fail_with(&self, status: u16) {
        self.mock.fail_with.store(status, Ordering::Relaxed);
    }

    /// Break streamed answers after `events` events (0: never).
    pub fn cut_after(&self, events: usize) {
        self.mock.cut_after.store(events, Ordering::Relaxed);
    }

    /// (path, model) of every completion request seen.
    pub fn seen(&self) -> Vec<(String, String)> {
        self.mock.seen.lock().unwrap().clone()
    }
}
