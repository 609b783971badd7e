//! What the API counts for `/metrics`: connections open now (Unix socket and TCP, other
//! daemons' peer links included) and requests by `op`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// The label set of a request count: its `op`.
pub(crate) type OpLabel = [(&'static str, &'static str); 1];

/// The API's counters. Cheap to clone: every field shares its value with its clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meters {
    /// Connections past their accept (in the hello or established), Unix socket and TCP.
    pub connections: Gauge,
    /// Requests received, by `op` (a channel stream counts once, when it opens).
    pub requests: Family<OpLabel, Counter>,
}

impl Meters {
    /// Counts a request.
    pub fn request(&self, op: &'static str) {
        self.requests.get_or_create(&[("op", op)]).inc();
    }

    /// Counts a connection open until the guard is dropped.
    pub fn connection(&self) -> Open {
        self.connections.inc();
        Open(self.connections.clone())
    }
}

/// One open connection in [`Meters::connections`]; dropped when it closes.
pub(crate) struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}
