//! Shell completion of the names the cluster knows — workers and replica sets, channels,
//! nodes — asked of the daemon while the shell completes. The shell script (`circuit
//! completions SHELL`) calls `circuit` back with [`ENV`] set; clap's completion engine parses
//! the words so far and calls the completers below for the argument under the cursor.
//! A daemon that does not answer within [`ASK_TIMEOUT`] gives no names, never an error.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use clap_complete::engine::{ArgValueCandidates, ArgValueCompleter, CompletionCandidate};

use circuit_sdk::paths::{default_socket_path, SOCKET_ENV};
use circuit_sdk::proto::{Reply, Request, SET_LABEL};
use circuit_sdk::{Client, ConnectOptions, Target};

/// The variable that asks `circuit` for completions instead of running a command.
pub const ENV: &str = "CIRCUIT_COMPLETE";

/// How long a completion may wait for the daemon.
const ASK_TIMEOUT: Duration = Duration::from_millis(800);

/// What an argument names.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A worker, or a replica set (the name of its copies' set).
    Worker,
    /// A channel.
    Channel,
    /// A node of the mesh.
    Node,
}

/// Completes worker and replica-set names.
pub fn workers() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| complete(Kind::Worker, current))
}

/// Completes channel names.
pub fn channels() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| complete(Kind::Channel, current))
}

/// Completes node names.
pub fn nodes() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| complete(Kind::Node, current))
}

/// The names of `kind` that start with what is typed so far.
fn complete(kind: Kind, current: &OsStr) -> Vec<CompletionCandidate> {
    let prefix = current.to_string_lossy();
    names(kind)
        .into_iter()
        .filter(|name| name.starts_with(prefix.as_ref()))
        .map(CompletionCandidate::new)
        .collect()
}

/// Every name of `kind` the daemon knows, sorted; none if it does not answer in time.
fn names(kind: Kind) -> BTreeSet<String> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return BTreeSet::new();
    };
    runtime
        .block_on(async { tokio::time::timeout(ASK_TIMEOUT, ask(kind)).await })
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Asks the daemon on this host's socket (`CIRCUIT_SOCKET`, or the default path).
async fn ask(kind: Kind) -> Option<BTreeSet<String>> {
    let socket = std::env::var_os(SOCKET_ENV)
        .filter(|s| !s.is_empty())
        .map_or_else(default_socket_path, PathBuf::from);
    let client = Client::connect_with(&Target::Unix(socket), ConnectOptions::default())
        .await
        .ok()?;
    let request = match kind {
        Kind::Worker => Request::ClusterList { all: true },
        Kind::Channel => Request::ChanList,
        Kind::Node => Request::Nodes,
    };
    let names = match client.call(request).await.ok()? {
        Reply::Workers(workers) => workers
            .into_iter()
            .flat_map(|w| {
                let set = w.spec.labels.get(SET_LABEL).cloned();
                std::iter::once(w.name).chain(set)
            })
            .collect(),
        Reply::Chans(chans) => chans.into_iter().map(|c| c.name).collect(),
        Reply::Nodes(nodes) => nodes.into_iter().map(|n| n.name).collect(),
        _ => return None,
    };
    Some(names)
}

/// Completes one of a fixed set of words (an option whose parser takes a string).
pub fn values(words: &'static [&'static str]) -> ArgValueCandidates {
    ArgValueCandidates::new(move || words.iter().map(CompletionCandidate::new).collect())
}

/// The signals a stop is usually asked with.
pub const SIGNALS: &[&str] = &["TERM", "INT", "HUP", "QUIT", "KILL", "USR1", "USR2"];
