//! The subcommands, one file each (its clap `Args` and its `run`; `chan` is a directory of
//! its own subcommands), and [`Ctx`], what every subcommand shares: where the daemon is and
//! whether to print JSON.

mod chan;
mod completions;
mod events;
#[cfg(test)]
mod fixtures;
mod install;
mod join;
mod key;
mod keygen;
mod logs;
mod manifest;
mod nodes;
mod ps;
mod recv;
mod restart;
mod rm;
mod scale;
mod send;
mod sets;
mod signal;
mod spawn;
mod status;
mod stdin;
mod stop;
mod top;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use circuit_sdk::proto::{NodeInfo, Reply, Request, WorkerInfo};
use circuit_sdk::{Client, ConnectOptions};

use crate::error;

/// A subcommand of `circuit`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a worker process under circuitd's supervision.
    Spawn(Box<spawn::Args>),
    /// List workers.
    Ps(ps::Args),
    /// Watch the whole mesh live: nodes, workers and channels, refreshed every second.
    Top(top::Args),
    /// Print a worker's output.
    Logs(logs::Args),
    /// Stop workers: their stop signal, then SIGKILL after the grace period.
    Stop(stop::Args),
    /// Stop a worker (or every copy of a set) if needed and start it again.
    Restart(restart::Args),
    /// Give a replica set N copies: add the next numbers, or remove the highest.
    Scale(scale::Args),
    /// Send a signal to a worker.
    Signal(signal::Args),
    /// Wait for a worker to end, and exit with its exit code.
    Wait(wait::Args),
    /// Remove workers and their logs.
    Rm(rm::Args),
    /// Show the daemon's status, or with FILE what a manifest declares and how it runs.
    Status(status::Args),
    /// List the nodes of the mesh.
    Nodes(nodes::Args),
    /// Join this node to a mesh through nodes already in it.
    ///
    /// Waits until this node sees the node at one of the addresses as a member of its mesh, for
    /// --timeout (10s unless given). If none becomes one, it fails with the reason for each
    /// address (a node with no other member goes on trying them in the background).
    Join(join::Args),
    /// Print membership events (joins, deaths, ...) as they happen.
    Events(events::Args),
    /// Write a new cluster key to a file (0600).
    Keygen(keygen::Args),
    /// The cluster keys of every node: list them, rotate to a new one.
    Key(key::Args),
    /// Manage named channels: create, ls, stat, close, rm.
    Chan(chan::Args),
    /// Send a value (or each line of stdin) to a channel; waits until it is accepted.
    #[command(long_about = send::LONG_ABOUT)]
    Send(send::Args),
    /// Receive values from a channel and print one per line.
    #[command(long_about = recv::LONG_ABOUT)]
    Recv(recv::Args),
    /// Forward stdin to a worker spawned with --stdin; its end closes the worker's stdin.
    #[command(long_about = stdin::LONG_ABOUT)]
    Stdin(stdin::Args),
    /// Install or upgrade circuitd on hosts over SSH, and wait until they are in the mesh.
    Install(install::Args),
    /// Stop circuitd on hosts over SSH and remove what `circuit install` put there.
    Uninstall(install::UninstallArgs),
    /// Create or update the channels and workers a manifest declares.
    Apply(manifest::ApplyArgs),
    /// Remove the channels and workers a manifest declares.
    Down(manifest::DownArgs),
    /// Print a shell completion script: bash, zsh or fish.
    Completions(completions::Args),
}

impl Command {
    /// Runs the subcommand; the exit code is the process's.
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        match self {
            Self::Spawn(args) => spawn::run(ctx, *args).await,
            Self::Ps(args) => ps::run(ctx, args).await,
            Self::Top(args) => top::run(ctx, args).await,
            Self::Logs(args) => logs::run(ctx, args).await,
            Self::Stop(args) => stop::run(ctx, args).await,
            Self::Restart(args) => restart::run(ctx, args).await,
            Self::Scale(args) => scale::run(ctx, args).await,
            Self::Signal(args) => signal::run(ctx, args).await,
            Self::Wait(args) => wait::run(ctx, args).await,
            Self::Rm(args) => rm::run(ctx, args).await,
            Self::Status(args) => status::run(ctx, args).await,
            Self::Nodes(args) => nodes::run(ctx, args).await,
            Self::Join(args) => join::run(ctx, args).await,
            Self::Events(args) => events::run(ctx, args).await,
            Self::Keygen(args) => keygen::run(args),
            Self::Key(args) => key::run(ctx, args).await,
            Self::Chan(args) => chan::run(ctx, args).await,
            Self::Send(args) => send::run(ctx, args).await,
            Self::Recv(args) => recv::run(ctx, args).await,
            Self::Stdin(args) => stdin::run(ctx, args).await,
            Self::Install(args) => install::run(ctx, args),
            Self::Uninstall(args) => install::run_uninstall(ctx, args),
            Self::Apply(args) => manifest::apply(ctx, args).await,
            Self::Down(args) => manifest::down(ctx, args).await,
            Self::Completions(args) => completions::run(args),
        }
    }
}

/// Where the daemon is.
#[derive(Debug, Clone)]
enum Target {
    /// Its Unix socket (the default).
    Unix(PathBuf),
    /// Its TCP API (`--addr`).
    Tcp(String),
}

/// What every subcommand needs besides its own arguments.
#[derive(Debug, Clone)]
pub struct Ctx {
    target: Target,
    /// The cluster key file for TCP (`--key-file`, `CIRCUIT_KEY_FILE`).
    key_file: Option<PathBuf>,
    /// Print replies as JSON instead of for people.
    pub json: bool,
    /// How long connecting and the handshake may take (`--connect-timeout`).
    connect_timeout: std::time::Duration,
}

impl Ctx {
    /// `addr`, when given, wins over `socket`.
    pub fn new(
        socket: PathBuf,
        addr: Option<String>,
        key_file: Option<PathBuf>,
        json: bool,
    ) -> Self {
        let target = match addr {
            Some(addr) => Target::Tcp(addr),
            None => Target::Unix(socket),
        };
        Self {
            target,
            key_file,
            json,
            connect_timeout: circuit_sdk::client::HANDSHAKE_TIMEOUT,
        }
    }

    /// With a bound on connecting and the handshake other than the SDK's default.
    pub fn with_connect_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The cluster key file given with `--key-file` or `CIRCUIT_KEY_FILE`, if any.
    pub fn key_file(&self) -> Option<&std::path::Path> {
        self.key_file.as_deref()
    }

    /// True when the daemon is on this host (reached by its Unix socket), so local paths mean
    /// the same thing to it as to us.
    pub fn is_local(&self) -> bool {
        matches!(self.target, Target::Unix(_))
    }

    /// Connects to the daemon, with a hint on what to check when nobody answers.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let options = ConnectOptions::default()
            .handshake_timeout(self.connect_timeout)
            .keepalive_from_env();
        let result = match &self.target {
            Target::Unix(path) => {
                let target = circuit_sdk::Target::Unix(path.clone());
                Client::connect_with(&target, options).await
            }
            Target::Tcp(addr) => {
                let key = match &self.key_file {
                    Some(file) => Some(circuit_sdk::secure::read_key_file(file)?.swap_remove(0)),
                    None => None,
                };
                let target = circuit_sdk::Target::Tcp(addr.clone());
                Client::connect_with(&target, options.key(key)).await
            }
        };
        result.map_err(|e| error::connect(e, !self.is_local()))
    }
}

/// `--node NAME` of the commands about one node's workers: the request runs on that node.
/// Without it the request goes as is, and circuitd finds the worker's node itself.
#[derive(Debug, Default, clap::Args)]
pub struct NodeFlag {
    /// The node the worker is on [default: found by circuitd].
    #[arg(long, value_name = "NAME", add = crate::complete::nodes(), value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub node: Option<String>,
}

impl NodeFlag {
    /// `request` as it is sent: run on `--node` when given.
    pub fn wrap(&self, request: Request) -> Request {
        on(self.node.clone(), request)
    }
}

/// `request` run on `node` ([`Request::On`]) when there is one, else `request` itself.
pub fn on(node: Option<String>, request: Request) -> Request {
    match node {
        Some(node) => Request::On {
            node,
            request: Box::new(request),
        },
        None => request,
    }
}

/// Converts a worker's exit code (0..=255 by shell convention) to ours; anything else is 1.
pub fn exit_code(code: i32) -> ExitCode {
    u8::try_from(code).map_or(ExitCode::FAILURE, ExitCode::from)
}

/// The error for a reply of the wrong kind: a daemon of another version, or a bug.
pub fn unexpected(wanted: &str, got: &Reply) -> anyhow::Error {
    let got = match got {
        Reply::Done => "done",
        Reply::Worker(_) => "worker",
        Reply::Workers(_) => "workers",
        Reply::End(_) => "end",
        Reply::Status(_) => "status",
        Reply::Chan(_) => "chan",
        Reply::Chans(_) => "chans",
        Reply::Nodes(_) => "nodes",
        Reply::Claim(_) => "claim",
        Reply::Keys(_) => "keys",
    };
    error::CliError::hinted(
        format!("circuitd replied with {got} where {wanted} was expected"),
        "are circuit and circuitd the same version?",
    )
}

/// The worker in a `worker` reply.
pub fn expect_worker(reply: Reply) -> anyhow::Result<WorkerInfo> {
    match reply {
        Reply::Worker(info) => Ok(*info),
        other => Err(unexpected("a worker", &other)),
    }
}

/// The workers in a `workers` reply.
pub fn expect_workers(reply: Reply) -> anyhow::Result<Vec<WorkerInfo>> {
    match reply {
        Reply::Workers(list) => Ok(list),
        other => Err(unexpected("a list of workers", &other)),
    }
}

/// The nodes in a `nodes` reply.
pub fn expect_nodes(reply: Reply) -> anyhow::Result<Vec<NodeInfo>> {
    match reply {
        Reply::Nodes(list) => Ok(list),
        other => Err(unexpected("a list of nodes", &other)),
    }
}

/// Checks that a reply is `done`.
pub fn expect_done(reply: Reply) -> anyhow::Result<()> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected("done", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_flag_runs_the_request_on_that_node() {
        let wait = || Request::Wait { name: "job".into() };
        assert_eq!(NodeFlag::default().wrap(wait()), wait());
        let flag = NodeFlag {
            node: Some("h3".into()),
        };
        assert_eq!(
            flag.wrap(wait()),
            Request::On {
                node: "h3".into(),
                request: Box::new(wait()),
            }
        );
    }

    #[test]
    fn a_reply_of_the_wrong_kind_is_one_line() {
        let err = expect_workers(Reply::Nodes(Vec::new())).unwrap_err();
        assert_eq!(
            error::render(&err),
            "circuitd replied with nodes where a list of workers was expected — are circuit and \
             circuitd the same version?"
        );
        assert!(expect_nodes(Reply::Done).is_err());
    }
}
