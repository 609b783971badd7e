//! `circuit top`: a live view of the whole mesh in the terminal — nodes, workers and channels,
//! refreshed in place, sortable and scrollable — or, with `--once`, one snapshot as text.
//!
//! The files follow the data path: `data` asks the daemon for a sample; `snapshot` keeps the
//! last one and works out the channels' rates; `sort` and `rows` make each pane's cells; `ui`
//! is the state the keys change; `view` draws all that; `terminal` sets the terminal up and
//! puts it back; `plain` prints `--once`. All but `data` and `terminal` are pure. This file is
//! the event loop.

mod data;
mod plain;
mod rows;
mod snapshot;
mod sort;
mod terminal;
mod ui;
mod view;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::Ctx;
use crate::error::{self, CliError};
use crate::{output, parse};
use data::Source;
use snapshot::{Model, Sample};
use sort::SortKey;
use terminal::Screen;
use ui::{Action, Ui};

/// Shortest refresh interval: faster would only load the daemons.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Arguments of `circuit top`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Keys:\n  \
    q, Esc, Ctrl-C          quit\n  \
    Tab, Shift-Tab          focus the next, the previous pane\n  \
    ↑ ↓ PgUp PgDn Home End  scroll the focused pane (also j k g G)\n  \
    n c m r                 sort it by name, cpu, memory, restarts; the same key again reverses\n                          \
    (nodes: c is load, m used memory; channels: c is values per second, m buffered values)\n\n\
    Examples:\n  \
    circuit top\n  \
    circuit top --interval 2s --sort cpu\n  \
    circuit top --once --all")]
pub struct Args {
    /// How often to refresh (`500ms`, `2s`, or seconds; at least 100ms).
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = interval)]
    pub interval: humantime::Duration,

    /// Also list workers that have exited (failed and lost ones are always listed).
    #[arg(short, long)]
    pub all: bool,

    /// The order to start in (keys change it).
    #[arg(long, value_name = "KEY", value_enum, default_value = "name")]
    pub sort: SortKey,

    /// Print one snapshot as text and exit (with --json, as one JSON document). Channel rates
    /// take a second sample, --interval after the first.
    #[arg(long)]
    pub once: bool,
}

/// `--interval`: a duration of at least [`MIN_INTERVAL`].
fn interval(s: &str) -> Result<humantime::Duration, String> {
    let d = parse::duration(s)?;
    if Duration::from(d) < MIN_INTERVAL {
        return Err(format!(
            "at least {} between refreshes",
            humantime::format_duration(MIN_INTERVAL)
        ));
    }
    Ok(d)
}

/// Runs the live view (or prints one snapshot, with `--once` or `--json`). Without a terminal
/// on stdout and without `--once`, refuses with exit code 2.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let every = Duration::from(args.interval);
    let source = Source::new(ctx.clone(), args.all);
    let ui = Ui::sorted_by(args.sort);
    if args.once || ctx.json {
        return once(ctx, source, every, &ui).await;
    }
    if !io::stdout().is_terminal() {
        error::print(&CliError::plain(
            "circuit top needs a terminal; use `circuit top --once` or `circuit ps --json`",
        ));
        return Ok(ExitCode::from(2));
    }
    live(source, every, ui).await
}

/// One snapshot on stdout. When there are channels, a second sample `every` after the first
/// gives their rates.
async fn once(ctx: &Ctx, mut source: Source, every: Duration, ui: &Ui) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut model = Model::default();
    let first = source.sample().await?;
    let again = !first.chans.is_empty();
    model.update(first, output::now_ms(), started.elapsed());
    if again {
        tokio::time::sleep(every).await;
        model.update(source.sample().await?, output::now_ms(), started.elapsed());
    }
    let snapshot = model.snapshot.expect("set by the update");
    if ctx.json {
        output::json(&snapshot)?;
    } else {
        let text = plain::text(&snapshot, |pane| ui.sort(pane));
        io::stdout().lock().write_all(text.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The live view until a quit key, SIGTERM or SIGHUP. Samples arrive from a task of their own,
/// so keys are answered at once even while a daemon is slow to answer or unreachable.
async fn live(source: Source, every: Duration, mut ui: Ui) -> anyhow::Result<ExitCode> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let (tx, mut samples) = mpsc::channel(1);
    let refresher = tokio::spawn(refresh(source, every, tx));
    let result: anyhow::Result<()> = async {
        let mut screen = Screen::enter()?;
        let mut keys = EventStream::new();
        let started = Instant::now();
        let mut model = Model::default();
        loop {
            let mut most = [0; 3];
            screen
                .terminal
                .draw(|frame| most = view::render(frame, &model, &ui, every, output::now_ms()))?;
            ui.clamp(most);
            tokio::select! {
                sample = samples.recv() => match sample {
                    Some(Ok(sample)) => model.update(sample, output::now_ms(), started.elapsed()),
                    Some(Err(e)) => model.failed(error::render(&e), output::now_ms()),
                    None => return Ok(()),
                },
                event = keys.next() => match event {
                    Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                        if ui.key(key) == Action::Quit {
                            return Ok(());
                        }
                    }
                    // A resize, or anything else: draw again.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(anyhow::Error::new(e).context("cannot read keys")),
                    None => return Ok(()),
                },
                _ = terminate.recv() => return Ok(()),
                _ = hangup.recv() => return Ok(()),
            }
        }
    }
    .await;
    refresher.abort();
    result.map(|()| ExitCode::SUCCESS)
}

/// Takes a sample every `every` (or, when one takes longer, as soon as it ends) and hands it
/// on, until the live view goes.
async fn refresh(mut source: Source, every: Duration, tx: mpsc::Sender<anyhow::Result<Sample>>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tx.send(source.sample().await).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_a_duration_of_at_least_100ms() {
        assert_eq!(
            interval("2s").map(Duration::from),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            interval("0.5").map(Duration::from),
            Ok(Duration::from_millis(500))
        );
        assert!(interval("50ms").unwrap_err().contains("at least 100ms"));
        assert!(interval("soon").is_err());
    }
}
