//! This daemon's metrics in the Prometheus text format (0.0.4), labelled with its `node`:
//! its own workers and the channels it owns (or leads), gathered at each scrape; the mesh and
//! API counters kept as they happen. Encoded by `prometheus-client`. Every metric is listed
//! in docs/OBSERVABILITY.md.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use circuit_sdk::proto::{ChanInfo, NodeState, WorkerInfo, WorkerState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::api::{meters as api, Context};
use crate::membership::meters as mesh;

/// The content type of the Prometheus text format.
pub(super) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The states a worker of this node can be in (`lost` is only in cluster lists).
const WORKER_STATES: [WorkerState; 6] = [
    WorkerState::Starting,
    WorkerState::Running,
    WorkerState::Backoff,
    WorkerState::Stopping,
    WorkerState::Exited,
    WorkerState::Failed,
];

/// The states of a node in the table.
const NODE_STATES: [NodeState; 4] = [
    NodeState::Alive,
    NodeState::Suspect,
    NodeState::Dead,
    NodeState::Left,
];

/// This daemon's metrics, as text.
pub(super) async fn render(ctx: &Context) -> String {
    let snapshot = Snapshot::gather(ctx).await;
    encode(
        &ctx.config.name,
        snapshot,
        ctx.membership.meters(),
        &ctx.meters,
    )
}

/// The text of node `node`'s metrics: what it holds now, and what it has counted.
fn encode(node: &str, snapshot: Snapshot, mesh: &mesh::Meters, api: &api::Meters) -> String {
    let node = (Cow::Borrowed("node"), Cow::Owned(node.to_string()));
    let mut registry = Registry::with_labels(std::iter::once(node));
    // The registry ends each help text with a period: those below have none.
    registry.register_with_unit(
        "circuit_mesh_gossip_sent",
        "Gossip sent on the UDP socket (sealed, with a cluster key)",
        Unit::Bytes,
        mesh.gossip_sent_bytes.clone(),
    );
    registry.register_with_unit(
        "circuit_mesh_gossip_received",
        "Gossip received on the UDP socket, refused packets included",
        Unit::Bytes,
        mesh.gossip_received_bytes.clone(),
    );
    registry.register(
        "circuit_mesh_suspicions",
        "Times a member became suspect in this node's table (its own suspicions and gossiped ones)",
        mesh.suspicions.clone(),
    );
    registry.register_with_unit(
        "circuit_mesh_probe_rtt",
        "Round trip of this node's direct probes: a ping out to its ack back",
        Unit::Seconds,
        mesh.probe_rtt.clone(),
    );
    registry.register(
        "circuit_api_connections",
        "API connections open now (Unix socket and TCP, other daemons' peer links included)",
        api.connections.clone(),
    );
    registry.register(
        "circuit_api_requests",
        "API requests received, by op (a channel stream counts once, when it opens)",
        api.requests.clone(),
    );
    registry.register_collector(Box::new(snapshot));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
    text
}

/// What this daemon holds at the moment of a scrape.
#[derive(Debug)]
struct Snapshot {
    /// Every worker of this node, exited and failed ones included.
    workers: Vec<WorkerInfo>,
    /// The channels this node owns, or leads (replicated).
    chans: Vec<ChanInfo>,
    /// The node table by state, this node included.
    members: BTreeMap<NodeState, u64>,
    version: &'static str,
    started_at_ms: u64,
}

impl Snapshot {
    async fn gather(ctx: &Context) -> Self {
        let me = &ctx.config.name;
        let chans = ctx
            .broker
            .list()
            .await
            .into_iter()
            .filter(|c| &c.owner == me)
            .collect();
        let mut members: BTreeMap<NodeState, u64> = NODE_STATES.map(|s| (s, 0)).into();
        for node in ctx.membership.nodes() {
            *members.entry(node.state).or_default() += 1;
        }
        Self {
            workers: ctx.supervisor.list(true),
            chans,
            members,
            version: env!("CARGO_PKG_VERSION"),
            started_at_ms: ctx.started_at_ms,
        }
    }
}

/// One metric family: its descriptor, then one sample per label set.
fn family<L, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    rows: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result
where
    L: EncodeLabelSet,
    M: EncodeMetric,
{
    let mut family = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, metric) in rows {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A family of one figure per channel: name, help, and the figure.
type ChanFamily = (&'static str, &'static str, fn(&ChanInfo) -> u64);

/// A worker's label set.
fn worker(w: &WorkerInfo) -> [(&'static str, &str); 1] {
    [("worker", w.name.as_str())]
}

/// A channel's label set.
fn chan(c: &ChanInfo) -> [(&'static str, &str); 1] {
    [("channel", c.name.as_str())]
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let bytes = Some(&Unit::Bytes);
        let seconds = Some(&Unit::Seconds);
        family(
            &mut e,
            "circuit_daemon_info",
            "This daemon: always 1, with its version.",
            None,
            MetricType::Gauge,
            [([("version", self.version)], ConstGauge::new(1))],
        )?;
        family(
            &mut e,
            "circuit_daemon_start_time",
            "When this daemon started, in seconds since the Unix epoch.",
            seconds,
            MetricType::Gauge,
            [(
                [] as [(&str, &str); 0],
                ConstGauge::new(self.started_at_ms as f64 / 1000.0),
            )],
        )?;

        // Workers.
        let mut by_state: BTreeMap<WorkerState, u64> = WORKER_STATES.map(|s| (s, 0)).into();
        for w in &self.workers {
            *by_state.entry(w.state).or_default() += 1;
        }
        family(
            &mut e,
            "circuit_workers",
            "Workers of this node by state.",
            None,
            MetricType::Gauge,
            by_state
                .iter()
                .map(|(state, n)| ([("state", state.as_str())], ConstGauge::new(*n))),
        )?;

        family(
            &mut e,
            "circuit_worker_restarts",
            "Restarts the supervisor made of a worker since its spawn (or its last manual restart, which starts the count again).",
            None,
            MetricType::Counter,
            self.workers
                .iter()
                .map(|w| (worker(w), ConstCounter::new(u64::from(w.restarts)))),
        )?;
        let running = || {
            self.workers
                .iter()
                .filter_map(|w| Some((w, w.usage.as_ref()?)))
        };
        family(
            &mut e,
            "circuit_worker_cpu",
            "CPU time used by a running worker's own process (user and system), since that process started.",
            seconds,
            MetricType::Counter,
            running().map(|(w, u)| (worker(w), ConstCounter::new(u.cpu_seconds))),
        )?;
        family(
            &mut e,
            "circuit_worker_resident_memory",
            "Resident memory of a running worker's own process.",
            bytes,
            MetricType::Gauge,
            running().map(|(w, u)| (worker(w), ConstGauge::new(u.rss_bytes))),
        )?;
        family(
            &mut e,
            "circuit_worker_group_resident_memory",
            "Resident memory summed over a running worker's process group (what it forked).",
            bytes,
            MetricType::Gauge,
            running().map(|(w, u)| (worker(w), ConstGauge::new(u.group_rss_bytes))),
        )?;
        family(
            &mut e,
            "circuit_worker_group_processes",
            "Processes in a running worker's process group.",
            None,
            MetricType::Gauge,
            running().map(|(w, u)| (worker(w), ConstGauge::new(u.group_processes))),
        )?;

        // Channels.

        let gauges: [ChanFamily; 8] = [
            (
                "circuit_channel_capacity",
                "A channel's capacity: values it holds, buffered and in flight (0: rendezvous).",
                |c| c.capacity,
            ),
            (
                "circuit_channel_depth",
                "Values buffered in a channel, waiting for a receiver.",
                |c| c.len,
            ),
            (
                "circuit_channel_in_flight",
                "Values delivered to receivers and not acknowledged yet.",
                |c| c.in_flight,
            ),
            (
                "circuit_channel_waiting_senders",
                "Sends waiting for room (at capacity 0, for a receiver).",
                |c| c.waiting_senders,
            ),
            (
                "circuit_channel_waiting_receivers",
                "Receivers waiting for a value.",
                |c| c.waiting_receivers,
            ),
            (
                "circuit_channel_senders",
                "Open send streams of a channel.",
                |c| c.senders,
            ),
            (
                "circuit_channel_receivers",
                "Open receive streams of a channel.",
                |c| c.receivers,
            ),
            (
                "circuit_channel_closed",
                "1 if the channel is closed.",
                |c| u64::from(c.closed),
            ),
        ];
        for (name, help, value) in gauges {
            family(
                &mut e,
                name,
                help,
                None,
                MetricType::Gauge,
                self.chans
                    .iter()
                    .map(|c| (chan(c), ConstGauge::new(value(c)))),
            )?;
        }
        let counters: [ChanFamily; 3] = [
            ("circuit_channel_sent", "Values a channel accepted since it was created.", |c| c.sent),
            ("circuit_channel_received", "Values receivers acknowledged since the channel was created.", |c| c.received),
            ("circuit_channel_redelivered", "Values put back after a delivery (their receiver went away or gave them back), to be delivered again; since this node serves the channel.", |c| c.redelivered),
        ];
        for (name, help, value) in counters {
            family(
                &mut e,
                name,
                help,
                None,
                MetricType::Counter,
                self.chans
                    .iter()
                    .map(|c| (chan(c), ConstCounter::new(value(c)))),
            )?;
        }

        // The mesh, as this node sees it.
        family(
            &mut e,
            "circuit_mesh_members",
            "Nodes in this node's table by state, itself included.",
            None,
            MetricType::Gauge,
            self.members
                .iter()
                .map(|(state, n)| ([("state", state.as_str())], ConstGauge::new(*n))),
        )
    }
}

#[cfg(test)]
mod tests {
    use circuit_sdk::proto::{SpawnSpec, WorkerUsage};

    use super::*;

    fn worker(name: &str, state: WorkerState, rss: Option<u64>) -> WorkerInfo {
        WorkerInfo {
            name: name.into(),
            node: "n1".into(),
            state,
            pid: rss.map(|_| 42),
            restarts: 3,
            started_at_ms: None,
            exited_at_ms: None,
            last_exit: None,
            reason: None,
            next_start_at_ms: None,
            usage: rss.map(|rss_bytes| WorkerUsage {
                rss_bytes,
                cpu_seconds: 1.5,
                ..WorkerUsage::default()
            }),
            spec: SpawnSpec::default(),
            escaped: Vec::new(),
        }
    }

    #[test]
    fn the_text_has_every_family_typed_and_labelled_with_the_node() {
        let snapshot = Snapshot {
            workers: vec![
                worker("web", WorkerState::Running, Some(4096)),
                worker("old", WorkerState::Exited, None),
            ],
            chans: vec![ChanInfo {
                name: "jobs".into(),
                capacity: 8,
                len: 2,
                sent: 10,
                received: 8,
                redelivered: 1,
                ..ChanInfo::default()
            }],
            members: NODE_STATES
                .map(|s| (s, u64::from(s == NodeState::Alive)))
                .into(),
            version: "9.9.9",
            started_at_ms: 1_500,
        };
        let (mesh, api) = (mesh::Meters::default(), api::Meters::default());
        mesh.gossip_sent_bytes.inc_by(100);
        mesh.probe_rtt.observe(0.002);
        api.request("spawn");
        let _open = api.connection();
        let text = encode("n1", snapshot, &mesh, &api);
        for line in [
            "# TYPE circuit_workers gauge",
            "circuit_workers{node=\"n1\",state=\"running\"} 1",
            "circuit_workers{node=\"n1\",state=\"exited\"} 1",
            "circuit_workers{node=\"n1\",state=\"failed\"} 0",
            "# TYPE circuit_worker_restarts_total counter",
            "circuit_worker_restarts_total{node=\"n1\",worker=\"old\"} 3",
            "circuit_worker_resident_memory_bytes{node=\"n1\",worker=\"web\"} 4096",
            "circuit_worker_cpu_seconds_total{node=\"n1\",worker=\"web\"} 1.5",
            "# TYPE circuit_channel_sent_total counter",
            "circuit_channel_sent_total{node=\"n1\",channel=\"jobs\"} 10",
            "circuit_channel_redelivered_total{node=\"n1\",channel=\"jobs\"} 1",
            "circuit_channel_depth{node=\"n1\",channel=\"jobs\"} 2",
            "circuit_mesh_members{node=\"n1\",state=\"alive\"} 1",
            "circuit_mesh_gossip_sent_bytes_total{node=\"n1\"} 100",
            "# TYPE circuit_mesh_probe_rtt_seconds histogram",
            "circuit_mesh_probe_rtt_seconds_bucket{node=\"n1\",le=\"0.0025\"} 1",
            "circuit_mesh_probe_rtt_seconds_count{node=\"n1\"} 1",
            "circuit_api_requests_total{node=\"n1\",op=\"spawn\"} 1",
            "circuit_api_connections{node=\"n1\"} 1",
            "circuit_daemon_info{node=\"n1\",version=\"9.9.9\"} 1",
            "circuit_daemon_start_time_seconds{node=\"n1\"} 1.5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }
        // A worker that does not run has no usage to report.
        assert!(!text.contains("worker=\"old\"} 0.0"), "{text}");
        assert!(
            !text.contains("circuit_worker_resident_memory_bytes{node=\"n1\",worker=\"old\""),
            "{text}"
        );
        // A help text ends with one period, never two.
        assert!(!text.contains(".."), "{text}");
    }
}
