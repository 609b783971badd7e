//! Mode (b), the conductor: creates the channels, spawns the stages as workers through circuitd
//! (this same executable, bound to the channels by name) — on this node or on chosen nodes of
//! the mesh — waits for the result, and removes everything it created, whatever happened.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use circuit_sdk::proto::{
    Placement, Reply, Request, RestartPolicy, RestartSpec, SpawnSpec, WorkerEnd,
};
use circuit_sdk::Client;

use crate::stages::Report;
use crate::Params;

/// How a distributed run is set up.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The pipeline's size and seed.
    pub params: Params,
    /// Starts the name of every channel and worker, so runs can share a daemon.
    pub prefix: String,
    /// Each analyzer's pause between passing counts on and acknowledging the document.
    pub analyze_pause: Duration,
    /// Where the stages run; `None`: all on the daemon this run talks to.
    pub nodes: Option<Nodes>,
    /// Replicas of each channel: 1 (owned by the node of the stage that reads it), or 3 or 5
    /// (replicated, placed by circuitd: the run survives the death of a channel's leader).
    pub replicas: u32,
}

/// The mesh nodes the stages run on, `--nodes FETCH,ANALYZE,STORE`.
///
/// Each channel lives on the node of the stage that reads it — `docs` with the analyzers,
/// `counts` with the store, `result` with this conductor: a receiver's credit, acknowledgements
/// and recalls stay on its own node, while sends cross the network on reserved room without
/// waiting for each answer. Every stage uses the SDK's defaults: nothing is tuned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// Runs `fetch`.
    pub fetch: String,
    /// Runs every analyzer and owns `docs`.
    pub analyze: String,
    /// Runs `store` and owns `counts`.
    pub store: String,
}

impl FromStr for Nodes {
    type Err = String;

    /// `FETCH,ANALYZE,STORE`: three node names, which may repeat.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split(',').map(str::trim).collect::<Vec<_>>()[..] {
            [fetch, analyze, store] if [fetch, analyze, store].iter().all(|n| !n.is_empty()) => {
                Ok(Self {
                    fetch: fetch.into(),
                    analyze: analyze.into(),
                    store: store.into(),
                })
            }
            _ => Err(format!(
                "expected three node names FETCH,ANALYZE,STORE (e.g. h1,h2,h3), got \"{s}\""
            )),
        }
    }
}

/// What a run created, so that it can all be removed.
struct Deployment {
    client: Client,
    chans: Vec<String>,
    workers: Vec<String>,
}

/// Runs the pipeline as workers of the daemon at `CIRCUIT_SOCKET` (or the default socket).
pub async fn run(setup: &Setup) -> anyhow::Result<Report> {
    let client = Client::connect_default()
        .await
        .map_err(|e| anyhow!("{e} (is circuitd running? CIRCUIT_SOCKET names its socket)"))?;
    let mut deployment = Deployment {
        client,
        chans: Vec::new(),
        workers: Vec::new(),
    };
    let result = tokio::select! {
        result = deployment.run(setup) => result,
        signal = interrupted() => Err(anyhow!("interrupted by {signal}")),
    };
    deployment.teardown().await;
    result
}

impl Deployment {
    async fn run(&mut self, setup: &Setup) -> anyhow::Result<Report> {
        let p = &setup.params;
        let name = |what: &str| format!("{}{what}", setup.prefix);
        let nodes = setup.nodes.as_ref();
        let fetch_node = nodes.map(|n| n.fetch.as_str());
        let analyze_node = nodes.map(|n| n.analyze.as_str());
        let store_node = nodes.map(|n| n.store.as_str());
        let (docs, counts, result) = (name("docs"), name("counts"), name("result"));
        let r = setup.replicas;
        self.chan(&docs, p.cap, analyze_node, r).await?;
        self.chan(&counts, p.cap, store_node, r).await?;
        let result_chan = self.chan(&result, 1, None, r).await?;
        let mut results = result_chan.receiver::<Report>().await?;

        let (store, fetch) = (name("store"), name("fetch"));
        let n = p.docs.to_string();
        self.spawn(
            &store,
            store_node,
            &["store", "--docs", &n],
            &[("in", counts.as_str()), ("out", result.as_str())],
        )
        .await?;
        let pause = setup.analyze_pause.as_millis().to_string();
        for i in 1..=p.analyzers {
            let args = ["analyze", "--pause-ms", &pause];
            let chans = [("in", docs.as_str()), ("out", counts.as_str())];
            self.spawn(&name(&format!("analyze-{i}")), analyze_node, &args, &chans)
                .await?;
        }
        let seed = p.seed.to_string();
        let args = ["fetch", "--docs", &n, "--seed", &seed];
        self.spawn(&fetch, fetch_node, &args, &[("out", docs.as_str())])
            .await?;

        // The result, unless the store or the fetcher fails first (analyzers may die: others
        // take over their documents).
        let fetch_failed = async {
            match self.wait(&fetch).await? {
                end if end.shell_code() == 0 => std::future::pending().await,
                end => Err(anyhow!("{} — see `circuit logs {fetch}`", ended(&end))),
            }
        };
        tokio::select! {
            report = results.recv() => Ok(report?),
            end = self.wait(&store) => match results.try_recv().await {
                Ok(report) => Ok(report),
                Err(_) => bail!("{} without a result — see `circuit logs {store}`", ended(&end?)),
            },
            failed = fetch_failed => failed,
        }
    }

    /// Creates channel `name` owned by `node` (by default the daemon this run talks to), or,
    /// with `replicas` > 1, replicated wherever circuitd places it.
    async fn chan(
        &mut self,
        name: &str,
        cap: u64,
        node: Option<&str>,
        replicas: u32,
    ) -> anyhow::Result<circuit_sdk::chan::Chan> {
        if replicas > 1 {
            let options = circuit_sdk::chan::ChanOptions::replicated(replicas);
            let chan = self
                .client
                .chan_create_with(name, cap, options, false)
                .await
                .with_context(|| format!("cannot create channel {name} (replicas {replicas})"))?;
            self.chans.push(name.to_string());
            return Ok(chan);
        }
        let context = || match node {
            Some(node) => format!("cannot create channel {name} on node {node}"),
            None => format!("cannot create channel {name}"),
        };
        let Some(node) = node else {
            let chan = self
                .client
                .chan_create(name, cap)
                .await
                .with_context(context)?;
            self.chans.push(name.to_string());
            return Ok(chan);
        };
        let create = Request::On {
            node: node.to_string(),
            request: Box::new(Request::ChanCreate {
                name: name.to_string(),
                capacity: cap,
                exist_ok: false,
                replicas: None,
                replica_labels: Vec::new(),
                storage: None,
            }),
        };
        match self.client.call(create).await.with_context(context)? {
            Reply::Chan(_) => self.chans.push(name.to_string()),
            other => bail!("unexpected reply to creating channel {name}: {other:?}"),
        }
        // Streams open by name from any node; the daemon finds the owner.
        Ok(self.client.chan(name).await?)
    }

    /// Spawns this executable as the worker `name` on `node` (by default the daemon this run
    /// talks to), never restarted: a killed replica stays dead and the others finish its work.
    /// The executable must be at the same path on every node.
    async fn spawn(
        &mut self,
        name: &str,
        node: Option<&str>,
        args: &[&str],
        chans: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let spec = SpawnSpec {
            name: Some(name.to_string()),
            command: exe.to_string_lossy().into_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            chans: chans
                .iter()
                .map(|(binding, chan)| (binding.to_string(), chan.to_string()))
                .collect::<BTreeMap<_, _>>(),
            restart: RestartSpec {
                policy: RestartPolicy::Never,
                ..RestartSpec::default()
            },
            ..SpawnSpec::default()
        };
        let request = match node {
            Some(node) => Request::Place(Placement {
                spec,
                node: Some(node.to_string()),
                ..Placement::default()
            }),
            None => Request::Spawn(spec),
        };
        self.client
            .call(request)
            .await
            .with_context(|| match node {
                Some(node) => format!("cannot spawn worker {name} on node {node}"),
                None => format!("cannot spawn worker {name}"),
            })?;
        self.workers.push(name.to_string());
        Ok(())
    }

    async fn wait(&self, name: &str) -> anyhow::Result<WorkerEnd> {
        match self
            .client
            .call(Request::Wait { name: name.into() })
            .await?
        {
            Reply::End(end) => Ok(end),
            other => bail!("unexpected reply to wait: {other:?}"),
        }
    }

    /// Removes the workers (stopping any still running), then the channels. Best effort: a
    /// failure is reported and the rest still removed.
    async fn teardown(self) {
        for name in &self.workers {
            let request = Request::Remove {
                name: name.clone(),
                force: true,
            };
            if let Err(e) = self.client.call(request).await {
                eprintln!("warning: cannot remove worker {name}: {e}");
            }
        }
        for name in &self.chans {
            if let Err(e) = self.client.chan_remove(name).await {
                eprintln!("warning: cannot remove channel {name}: {e}");
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM, so that an interrupted run still cleans up.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// "worker x exited with code 1", for error messages.
fn ended(end: &WorkerEnd) -> String {
    match end.exit {
        Some(exit) => format!("worker {} {} with {exit}", end.name, end.state),
        None => format!("worker {} {}", end.name, end.state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_three_names_in_stage_order() {
        let nodes: Nodes = "h1, h2,h3".parse().expect("three names");
        assert_eq!(
            nodes,
            Nodes {
                fetch: "h1".into(),
                analyze: "h2".into(),
                store: "h3".into(),
            }
        );
        assert_eq!("a,a,a".parse::<Nodes>().expect("repeats").store, "a");
        for bad in ["", "h1", "h1,h2", "h1,h2,h3,h4", "h1,,h3"] {
            assert!(bad.parse::<Nodes>().is_err(), "{bad:?} parsed");
        }
    }
}
