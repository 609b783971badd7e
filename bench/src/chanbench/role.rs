//! A role process (`bench-channels role …`): one sender, receiver, echo or pinger of one system.
//! It reports on stdout as [`Line`]s, starts sending on `go` from stdin, and stops at stdin's end.

use std::io::{BufRead as _, Write as _};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::protocol::{quantile, Line, Payload, RoundTrips, Sent, GO};
use super::tally::Inbox;
use super::{circuit, nats, rawsock, System};
use crate::procfs;

/// How often a receiver prints its count while it changes.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

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
    fn from_stdin(args: RoleArgs) -> Self {
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

    fn cpu_since_ready(&self) -> u64 {
        own_cpu().saturating_sub(self.cpu_at_ready).as_nanos() as u64
    }

    fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Runs one role and prints its last line; the exit code says whether it succeeded.
pub fn main(args: RoleArgs) -> ExitCode {
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let outcome = match runtime {
        Ok(runtime) => {
            let mut ctx = Ctx::from_stdin(args);
            let outcome = runtime.block_on(play(&mut ctx));
            // A client's background tasks may still wait on a socket; do not wait for them.
            runtime.shutdown_background();
            outcome
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot start a runtime")),
    };
    match outcome {
        Ok(line) => {
            emit(&line);
            ExitCode::SUCCESS
        }
        Err(e) => {
            emit(&Line::Failed {
                error: format!("{e:#}"),
            });
            ExitCode::FAILURE
        }
    }
}

/// Plays the role `ctx.args` names on its system and returns the last line to print.
async fn play(ctx: &mut Ctx) -> anyhow::Result<Line> {
    let (system, kind) = (ctx.args.system, ctx.args.kind);
    match kind {
        Kind::Send => {
            let span = match system {
                System::Nats => nats::send(ctx).await?,
                System::Raw => rawsock::send(ctx).await?,
                System::Circuit => circuit::send(ctx).await?,
            };
            Ok(Line::Sent(Sent {
                count: ctx.args.count,
                start_ns: span.start_ns,
                end_ns: span.end_ns,
                cpu_ns: ctx.cpu_since_ready(),
                notes: ctx.take_notes(),
            }))
        }
        Kind::Recv | Kind::Echo => {
            let progress = Arc::new(AtomicU64::new(0));
            let printer = tokio::spawn(print_progress(progress.clone()));
            // An echo sees one pinger's warm-up and measured pings.
            let (senders, per_sender) = match kind {
                Kind::Echo => (1, ctx.args.warmup + ctx.args.count),
                _ => (ctx.args.senders, ctx.args.count),
            };
            let mut inbox = Inbox::new(ctx.args.size, senders, per_sender, progress);
            let played = match (system, kind) {
                (System::Nats, Kind::Recv) => nats::recv(ctx, &mut inbox).await,
                (System::Nats, _) => nats::echo(ctx, &mut inbox).await,
                (System::Raw, Kind::Recv) => rawsock::recv(ctx, &mut inbox).await,
                (System::Raw, _) => rawsock::echo(ctx, &mut inbox).await,
                (System::Circuit, Kind::Recv) => circuit::recv(ctx, &mut inbox).await,
                (System::Circuit, _) => circuit::echo(ctx, &mut inbox).await,
            };
            printer.abort();
            played?;
            let mut report = inbox.into_report();
            report.cpu_ns = ctx.cpu_since_ready();
            report.notes = ctx.take_notes();
            Ok(Line::Received(report))
        }
        Kind::Ping => {
            let mut rtts = match system {
                System::Nats => nats::ping(ctx).await?,
                System::Raw => rawsock::ping(ctx).await?,
                System::Circuit => circuit::ping(ctx).await?,
            };
            rtts.sort_unstable();
            Ok(Line::RoundTrips(RoundTrips {
                count: rtts.len() as u64,
                p50_ns: quantile(&rtts, 0.50),
                p99_ns: quantile(&rtts, 0.99),
                max_ns: rtts.last().copied().unwrap_or(0),
                cpu_ns: ctx.cpu_since_ready(),
                notes: ctx.take_notes(),
            }))
        }
    }
}

/// Prints the inbox's count every [`PROGRESS_EVERY`] while it changes.
async fn print_progress(progress: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let mut last = 0;
    loop {
        tick.tick().await;
        let received = progress.load(Ordering::Relaxed);
        if received != last {
            last = received;
            emit(&Line::Progress { received });
        }
    }
}

/// Prints one line for the harness. A closed stdout means the harness is gone; the role then
/// ends when its stdin closes too.
fn emit(line: &Line) {
    let json = serde_json::to_string(line).expect("lines serialize");
    let _ = writeln!(std::io::stdout().lock(), "{json}");
}

/// This process's CPU time so far (zero if `/proc` cannot say).
fn own_cpu() -> Duration {
    procfs::cpu_time(std::process::id()).unwrap_or_default()
}
