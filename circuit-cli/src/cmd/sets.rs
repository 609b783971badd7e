//! Replica sets as the CLI sees them: `spawn --replicas N --name api` makes copies `api-1..N`,
//! each labelled `circuit.set=api` (by the daemon that places them). A name that is a set and
//! not a worker stands for its copies in `stop`, `restart`, `rm` and `logs`; `scale` adds or
//! removes copies.

use std::collections::BTreeSet;

use circuit_sdk::proto::{Request, WorkerInfo, SET_LABEL};
use circuit_sdk::{Client, Error as SdkError};

use super::{expect_workers, on};

/// The copies of set `set` among `workers`, by index.
pub fn members<'a>(workers: &'a [WorkerInfo], set: &str) -> Vec<(u32, &'a WorkerInfo)> {
    let mut copies: Vec<(u32, &WorkerInfo)> = workers
        .iter()
        .filter(|w| w.spec.labels.get(SET_LABEL).map(String::as_str) == Some(set))
        .filter_map(|w| Some((index_in(set, &w.name)?, w)))
        .collect();
    copies.sort_by_key(|(i, w)| (*i, w.node.clone()));
    copies
}

/// `7` for `api-7` in set `api`.
fn index_in(set: &str, name: &str) -> Option<u32> {
    name.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// Every worker of the mesh (or of `node`), exited ones too.
pub async fn all_workers(client: &Client, node: Option<&str>) -> anyhow::Result<Vec<WorkerInfo>> {
    let request = match node {
        Some(node) => on(Some(node.to_string()), Request::List { all: true }),
        None => Request::ClusterList { all: true },
    };
    expect_workers(client.call(request).await?)
}

/// True when `err` says a worker does not exist: the moment to see whether the name is a set.
pub fn not_found(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<SdkError>()
            .is_some_and(SdkError::is_not_found)
    })
}

/// The names of set `name`'s copies in index order, when `name` is a set (and not a worker).
pub async fn copies_of(
    client: &Client,
    name: &str,
    node: Option<&str>,
) -> anyhow::Result<Option<Vec<String>>> {
    let expanded = expand(client, vec![name.to_string()], node).await?;
    Ok((expanded != [name]).then_some(expanded))
}

/// `names` with each name that is a set (and not also a worker) replaced by its copies, in
/// index order. Names that are neither stay, for the daemon to answer.
pub async fn expand(
    client: &Client,
    names: Vec<String>,
    node: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let workers = all_workers(client, node).await?;
    let exact: BTreeSet<&str> = workers.iter().map(|w| w.name.as_str()).collect();
    let mut out = Vec::new();
    for name in names {
        let copies = members(&workers, &name);
        if exact.contains(name.as_str()) || copies.is_empty() {
            out.push(name);
        } else {
            out.extend(copies.into_iter().map(|(_, w)| w.name.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use circuit_sdk::proto::{SpawnSpec, WorkerState};

    fn worker(name: &str, set: Option<&str>) -> WorkerInfo {
        let mut spec = SpawnSpec::default();
        if let Some(set) = set {
            spec.labels.insert(SET_LABEL.into(), set.into());
        }
        WorkerInfo {
            usage: None,
            escaped: Vec::new(),
            name: name.into(),
            node: "n1".into(),
            state: WorkerState::Running,
            pid: None,
            restarts: 0,
            started_at_ms: None,
            exited_at_ms: None,
            last_exit: None,
            reason: None,
            next_start_at_ms: None,
            spec,
        }
    }

    #[test]
    fn a_set_is_its_labelled_copies_in_index_order() {
        let workers = [
            worker("api-10", Some("api")),
            worker("api-2", Some("api")),
            worker("api-1", Some("api")),
            // Named like a copy, but not of the set: someone's own worker.
            worker("api-3", None),
            worker("api-x", Some("api")),
            worker("apix-1", Some("apix")),
        ];
        let names: Vec<&str> = members(&workers, "api")
            .iter()
            .map(|(_, w)| w.name.as_str())
            .collect();
        assert_eq!(names, ["api-1", "api-2", "api-10"]);
        assert!(members(&workers, "ap").is_empty());
    }
}
