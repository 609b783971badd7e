//! The three panes of `circuit top` and how each is sorted: by name, or busiest first by what a
//! key means for that pane (`c` CPU — a node's load, a channel's traffic; `m` memory — a
//! node's used memory, a channel's buffered values; `r` restarts, for workers). Pure.

use std::cmp::Ordering;

use circuit_sdk::proto::{NodeInfo, WorkerInfo};

use super::snapshot::ChanRow;

/// A pane of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    /// The node table.
    Nodes,
    /// Every worker of the mesh.
    Workers,
    /// Every channel of the mesh.
    Channels,
}

impl Pane {
    /// The panes, top to bottom (the order Tab goes through them).
    pub const ALL: [Pane; 3] = [Pane::Nodes, Pane::Workers, Pane::Channels];

    /// Position in [`Pane::ALL`].
    pub fn index(self) -> usize {
        match self {
            Pane::Nodes => 0,
            Pane::Workers => 1,
            Pane::Channels => 2,
        }
    }

    /// The pane's title.
    pub fn title(self) -> &'static str {
        match self {
            Pane::Nodes => "Nodes",
            Pane::Workers => "Workers",
            Pane::Channels => "Channels",
        }
    }

    /// Whether this pane can be sorted by `key`.
    pub fn sorts_by(self, key: SortKey) -> bool {
        key != SortKey::Restarts || self == Pane::Workers
    }
}

/// What a pane is sorted by (also `--sort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// Name, A to Z (workers: then node).
    Name,
    /// Busiest first: a worker's CPU, a node's load, a channel's values in and out per second.
    Cpu,
    /// Largest first: a worker's resident memory, a node's used memory, a channel's buffered
    /// values.
    Mem,
    /// Most restarted first (workers only).
    Restarts,
}

impl SortKey {
    /// How the pane title names the order, for `pane`.
    pub fn label(self, pane: Pane) -> &'static str {
        match (self, pane) {
            (SortKey::Name, _) => "name",
            (SortKey::Cpu, Pane::Nodes) => "load",
            (SortKey::Cpu, Pane::Workers) => "cpu",
            (SortKey::Cpu, Pane::Channels) => "rate",
            (SortKey::Mem, Pane::Channels) => "len",
            (SortKey::Mem, _) => "mem",
            (SortKey::Restarts, _) => "restarts",
        }
    }
}

/// A pane's order: a key, and whether it is turned around (pressing the key again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    /// What is compared.
    pub key: SortKey,
    /// Reversed: Z to A, or least busy first.
    pub reverse: bool,
}

impl Sort {
    /// By name, A to Z.
    pub const NAME: Sort = Sort {
        key: SortKey::Name,
        reverse: false,
    };
}

/// `a` before `b` when bigger; a missing figure after any figure.
fn bigger_first<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// `list` in `sort` order; ties go by name.
fn sorted<T>(
    list: &[T],
    sort: Sort,
    by_key: impl Fn(&T, &T) -> Ordering,
    by_name: impl Fn(&T, &T) -> Ordering,
) -> Vec<&T> {
    let mut refs: Vec<&T> = list.iter().collect();
    refs.sort_by(|a, b| {
        let order = by_key(a, b).then_with(|| by_name(a, b));
        if sort.reverse {
            order.reverse()
        } else {
            order
        }
    });
    refs
}

/// Memory a node's host uses, when known.
pub fn used_memory(n: &NodeInfo) -> Option<u64> {
    (n.mem_total_bytes > 0).then(|| n.mem_total_bytes.saturating_sub(n.mem_available_bytes))
}

/// The nodes in `sort` order.
pub fn nodes(list: &[NodeInfo], sort: Sort) -> Vec<&NodeInfo> {
    sorted(
        list,
        sort,
        |a, b| match sort.key {
            SortKey::Cpu => bigger_first(Some(a.load), Some(b.load)),
            SortKey::Mem => bigger_first(used_memory(a), used_memory(b)),
            SortKey::Name | SortKey::Restarts => Ordering::Equal,
        },
        |a, b| a.name.cmp(&b.name),
    )
}

/// The workers in `sort` order. CPU and memory are the process group's, as `circuit ps`
/// shows them.
pub fn workers(list: &[WorkerInfo], sort: Sort) -> Vec<&WorkerInfo> {
    let cpu = |w: &WorkerInfo| w.usage.as_ref().and_then(|u| u.group_cpu_percent);
    let mem = |w: &WorkerInfo| w.usage.as_ref().map(|u| u.group_rss_bytes);
    sorted(
        list,
        sort,
        |a, b| match sort.key {
            SortKey::Cpu => bigger_first(cpu(a), cpu(b)),
            SortKey::Mem => bigger_first(mem(a), mem(b)),
            SortKey::Restarts => bigger_first(Some(a.restarts), Some(b.restarts)),
            SortKey::Name => Ordering::Equal,
        },
        |a, b| (&a.name, &a.node).cmp(&(&b.name, &b.node)),
    )
}

/// Values in and out per second, when either is known.
pub fn traffic(c: &ChanRow) -> Option<f64> {
    match (c.rate_in, c.rate_out) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

/// The channels in `sort` order.
pub fn chans(list: &[ChanRow], sort: Sort) -> Vec<&ChanRow> {
    sorted(
        list,
        sort,
        |a, b| match sort.key {
            SortKey::Cpu => bigger_first(traffic(a), traffic(b)),
            SortKey::Mem => bigger_first(Some(a.info.len), Some(b.info.len)),
            SortKey::Name | SortKey::Restarts => Ordering::Equal,
        },
        |a, b| (&a.info.name, &a.info.owner).cmp(&(&b.info.name, &b.info.owner)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::fixtures::{node, worker};
    use circuit_sdk::proto::{NodeState, WorkerState, WorkerUsage};

    fn with_usage(name: &str, cpu: Option<f64>, rss: u64) -> WorkerInfo {
        let mut w = worker(name, "h1", WorkerState::Running);
        w.usage = Some(WorkerUsage {
            cpu_seconds: 0.0,
            cpu_percent: cpu,
            rss_bytes: rss,
            group_cpu_percent: cpu,
            group_rss_bytes: rss,
            group_processes: 1,
            sampled_at_ms: 1_000,
        });
        w
    }

    fn names<'a>(list: impl IntoIterator<Item = &'a WorkerInfo>) -> Vec<&'a str> {
        list.into_iter().map(|w| w.name.as_str()).collect()
    }

    #[test]
    fn workers_sort_busiest_first_unsampled_last_ties_by_name() {
        let list = vec![
            with_usage("b", Some(1.0), 300),
            with_usage("new", None, 100),
            with_usage("hog", Some(99.5), 200),
            with_usage("a", Some(1.0), 100),
            worker("gone", "h2", WorkerState::Lost),
        ];
        let by = |key, reverse| names(workers(&list, Sort { key, reverse }));
        assert_eq!(by(SortKey::Name, false), ["a", "b", "gone", "hog", "new"]);
        assert_eq!(by(SortKey::Cpu, false), ["hog", "a", "b", "gone", "new"]);
        assert_eq!(by(SortKey::Mem, false), ["b", "hog", "a", "new", "gone"]);
        assert_eq!(by(SortKey::Name, true), ["new", "hog", "gone", "b", "a"]);
    }

    #[test]
    fn nodes_sort_by_load_and_used_memory() {
        let mut h1 = node("h1", NodeState::Alive);
        (h1.load, h1.mem_total_bytes, h1.mem_available_bytes) = (0.5, 100, 10);
        let mut h2 = node("h2", NodeState::Alive);
        (h2.load, h2.mem_total_bytes, h2.mem_available_bytes) = (2.0, 100, 50);
        let h3 = node("h3", NodeState::Dead);
        let list = [h3, h2, h1];
        let by = |key| -> Vec<&str> {
            nodes(
                &list,
                Sort {
                    key,
                    reverse: false,
                },
            )
            .into_iter()
            .map(|n| n.name.as_str())
            .collect()
        };
        assert_eq!(by(SortKey::Name), ["h1", "h2", "h3"]);
        assert_eq!(by(SortKey::Cpu), ["h2", "h1", "h3"]);
        assert_eq!(
            by(SortKey::Mem),
            ["h1", "h2", "h3"],
            "h3's memory is unknown"
        );
        assert!(!Pane::Nodes.sorts_by(SortKey::Restarts));
        assert!(Pane::Workers.sorts_by(SortKey::Restarts));
    }
}
