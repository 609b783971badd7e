//! A role process (`bench-channels role …`): one sender, steady sender, receiver, echo or pinger
//! of one system.
//! It reports on stdout as [`Line`]s, starts sending on `go` from stdin, and stops at stdin's end.
//! A system whose roles are C programs has the process replaced by its program ([`cprog`]).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::ctx::{emit, Ctx, Kind, RoleArgs, Span};
use super::protocol::{quantile, Acked, Line, RoundTrips, Sent};
use super::tally::Inbox;
use super::{circuit, circuit_defaults, cprog, jetstream, nats, rawsock, System};

/// How often a receiver prints its count while it changes.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// Runs one role and prints its last line; the exit code says whether it succeeded.
pub fn main(args: RoleArgs) -> ExitCode {
    if let Some(program) = args.system.c_program() {
        return cprog::exec(program, &args);
    }
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
            // Dropped as `#[tokio::main]` drops it when `main` returns: the tasks still
            // running are dropped (the SDK's writer then writes what it holds).
            drop(runtime);
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
                System::CircuitDefaults => circuit_defaults::send(ctx).await?,
                System::JetStream => jetstream::send(ctx).await?,
                System::NatsC | System::JetStreamC | System::Zmq => bail_c(system)?,
            };
            Ok(sent(ctx, span, Vec::new()))
        }
        Kind::Steady => {
            let (span, timeline) = match system {
                System::Circuit => circuit::send_steady(ctx).await?,
                System::JetStream => jetstream::send_steady(ctx).await?,
                System::Nats
                | System::Raw
                | System::CircuitDefaults
                | System::NatsC
                | System::JetStreamC
                | System::Zmq => {
                    anyhow::bail!("{system} has no steady sender")
                }
            };
            Ok(sent(ctx, span, timeline))
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
                (System::CircuitDefaults, Kind::Recv) => {
                    circuit_defaults::recv(ctx, &mut inbox).await
                }
                (System::CircuitDefaults, _) => circuit_defaults::echo(ctx, &mut inbox).await,
                (System::JetStream, Kind::Recv) => jetstream::recv(ctx, &mut inbox).await,
                (System::JetStream, _) => Err(anyhow::anyhow!(
                    "JetStream has no round-trip roles in this benchmark"
                )),
                (System::NatsC | System::JetStreamC | System::Zmq, _) => bail_c(system),
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
                System::CircuitDefaults => circuit_defaults::ping(ctx).await?,
                System::NatsC | System::JetStreamC | System::Zmq => bail_c(system)?,
                System::JetStream => {
                    anyhow::bail!("JetStream has no round-trip roles in this benchmark")
                }
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

/// Never reached: [`main`] hands these systems' roles to their C programs.
fn bail_c<T>(system: System) -> anyhow::Result<T> {
    anyhow::bail!("{system}'s roles are C programs, not this binary's")
}

/// A sender's last line.
fn sent(ctx: &Ctx, span: Span, timeline: Vec<Acked>) -> Line {
    Line::Sent(Sent {
        count: ctx.args.count,
        start_ns: span.start_ns,
        end_ns: span.end_ns,
        cpu_ns: ctx.cpu_since_ready(),
        notes: ctx.take_notes(),
        timeline,
    })
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
