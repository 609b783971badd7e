//! What a role process is given and what it says: its flags ([`RoleArgs`], [`Kind`]), and
//! [`Ctx`], its view of the harness — `go` and stop from stdin, notes, `ready` and the other
//! [`Line`]s on stdout, its own CPU time. Every contender's roles are written against it.

use std::io::{BufRead as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::protocol::{Line, Payload, GO};
use super::System;
use crate::procfs;

/// What a role process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Sends `count` stamped messages as fast as it can, after `go`.
    Send,
    /// Takes messages until stdin closes.
    Recv,
    /// Sends back every ping until stdin closes.
    Echo,
    /// Sends a ping and waits for its pong, `warmup + count` times, after `go`.
    Ping,
    /// Sends `count` stamped messages at `--rate` per second after `go`, and reports when each
    /// was first sent and when it was acknowledged (the failover benchmark's sender).
    Steady,
}

impl Kind {
    /// Its name on the command line.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Recv => "recv",
            Self::Echo => "echo",
            Self::Ping => "ping",
            Self::Steady => "steady",
        }
    }
}

/// The hidden `role` subcommand's flags; the harness writes them, not a person.
#[derive(Debug, Clone, clap::Args)]
pub struct RoleArgs {
    /// Which system to drive.
    #[arg(long, value_enum)]
    pub system: System,
    /// What to play.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Where the system is: a NATS URL, circuitd's socket, or the raw sockets' directory.
    #[arg(long)]
    pub endpoint: String,
    /// The subject, channel or socket name of this trial.
    #[arg(long)]
    pub name: String,
    /// Payload size in bytes.
    #[arg(long)]
    pub size: usize,
    /// A sender's index, stamped into its payloads.
    #[arg(long, default_value_t = 0)]
    pub index: u32,
    /// Senders in the trial, so a receiver can size its tally.
    #[arg(long, default_value_t = 1)]
    pub senders: u32,
    /// Messages per sender, or round trips measured.
    #[arg(long)]
    pub count: u64,
    /// Round trips before measuring.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Most messages a sender has sent and not yet seen acknowledged (circuit's
    /// `SendOptions::window`; JetStream's outstanding publish acks).
    #[arg(long, default_value_t = 4096)]
    pub window: u32,
    /// Messages per second a steady sender sends.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Runtime worker threads; 1 is a current-thread runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// When a sender sent its first message and when its last one was accepted ([`now_ns`]).
///
/// [`now_ns`]: super::protocol::now_ns
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// Before the first message.
    pub start_ns: u64,
    /// After the flush that follows the last.
    pub end_ns: u64,
}

/// Notes a client's callbacks add while the role runs (NATS connection events).
pub type Notes = Arc<Mutex<Vec<String>>>;

/// A role's view of the harness: its flags, `go`, stop, and notes.
#[derive(Debug)]
pub struct Ctx {
    /// The flags it was started with.
    pub args: RoleArgs,
    go: Option<oneshot::Receiver<()>>,
    stop: CancellationToken,
    notes: Notes,
    /// CPU time at `ready`, so reports count only the work after it.
    cpu_at_ready: Duration,
}

impl Ctx {
    /// Starts the thread that reads stdin: `go` starts a sender, the end of input stops a role.
    /// A plain thread, so a role can exit while it is still blocked in `read`.
    pub fn from_stdin(args: RoleArgs) -> Self {
        let (go_tx, go) = oneshot::channel();
        let stop = CancellationToken::new();
        let stopper = stop.clone();
        std::thread::spawn(move || {
            let mut go_tx = Some(go_tx);
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(line) if line.trim() == GO => {
                        if let Some(tx) = go_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            stopper.cancel();
        });
        Self {
            args,
            go: Some(go),
            stop,
            notes: Notes::default(),
            cpu_at_ready: Duration::ZERO,
        }
    }

    /// Tells the harness the role is connected and listening.
    pub fn ready(&mut self) {
        self.cpu_at_ready = own_cpu();
        emit(&Line::Ready);
    }

    /// Waits for `go`; fails if stdin closes first.
    pub async fn go(&mut self) -> anyhow::Result<()> {
        let go = self.go.take().context("`go` awaited twice")?;
        tokio::select! {
            started = go => started.context("stdin closed before `go`"),
            () = self.stop.cancelled() => bail!("stdin closed before `go`"),
        }
    }

    /// Resolves once stdin has closed: time to report and exit.
    pub fn stopped(&self) -> WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }

    /// Where a client's callbacks put what they see.
    pub fn notes(&self) -> Notes {
        self.notes.clone()
    }

    /// The payload of this trial's size.
    pub fn payload(&self) -> Payload {
        Payload::new(self.args.size)
    }

    /// CPU time (ns) this process used since [`Ctx::ready`].
    pub fn cpu_since_ready(&self) -> u64 {
        own_cpu().saturating_sub(self.cpu_at_ready).as_nanos() as u64
    }

    /// The notes so far, taken.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Prints one line for the harness. A closed stdout means the harness is gone; the role then
/// ends when its stdin closes too.
pub fn emit(line: &Line) {
    let json = serde_json::to_string(line).expect("lines serialize");
    let _ = writeln!(std::io::stdout().lock(), "{json}");
}

/// This process's CPU time so far (zero if `/proc` cannot say).
fn own_cpu() -> Duration {
    procfs::cpu_time(std::process::id()).unwrap_or_default()
}
