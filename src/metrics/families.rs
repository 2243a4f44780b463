//! The one way a metric family is made: named in the `portcullis` namespace and registered in
//! the gateway's registry (definitions are static: a failure is a programming error).

use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Registers families in one registry.
pub struct Families<'r>(pub &'r Registry);

pub fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("portcullis")
}

impl Families<'_> {
    fn registered<T: prometheus::core::Collector + Clone + 'static>(&self, metric: prometheus::Result<T>) -> T {
        let m = metric.expect("valid metric definition");
        self.0.register(Box::new(m.clone())).expect("metric registered once");
        m
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.registered(IntCounter::with_opts(opts(name, help)))
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.registered(IntCounterVec::new(opts(name, help), labels))
    }

    /// A counter of fractional amounts (money).
    pub fn float_counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> CounterVec {
        self.registered(CounterVec::new(opts(name, help), labels))
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.registered(IntGauge::with_opts(opts(name, help)))
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.registered(IntGaugeVec::new(opts(name, help), labels))
    }

    pub fn histogram_vec(&self, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
        self.registered(HistogramVec::new(HistogramOpts::new(name, help).namespace("portcullis").buckets(buckets.to_vec()), labels))
    }
}
