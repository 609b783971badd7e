//! The role processes of one trial: this binary re-executed per role, its stdout read as
//! [`Line`]s, its stderr kept for error messages, and every process killed (by pid) on drop.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ctx::Kind;
use super::protocol::{Line, GO};
use super::trial::{Side, Trial};

/// Lines of a role's stderr kept for an error message.
const STDERR_LINES: usize = 20;
/// How long a role may take to exit once it has reported.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// What a role's stdout reader passes on.
enum Event {
    Line(Line),
    /// Something that is not a [`Line`].
    Garbage(String),
    /// End of its stdout.
    Closed,
}

/// One role process.
struct Proc {
    role: String,
    child: Child,
    /// `None` once closed: the role's signal to stop.
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// It printed its last line; its stdout closing is then expected.
    reported: bool,
}

/// The role processes of one trial, addressed by the id [`Fleet::spawn`] returns. Dropping it kills those still running (by pid, through
/// `kill_on_drop`) and stops the tasks reading their output.
pub struct Fleet {
    trial: Trial,
    procs: Vec<Proc>,
    events_tx: mpsc::UnboundedSender<(usize, Event)>,
    events: mpsc::UnboundedReceiver<(usize, Event)>,
    readers: JoinSet<()>,
}

impl Fleet {
    /// No processes yet, for `trial`.
    pub fn new(trial: &Trial) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        Self {
            trial: trial.clone(),
            procs: Vec::new(),
            events_tx,
            events,
            readers: JoinSet::new(),
        }
    }

    /// How many roles it has started; ids are `0..len`.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// True before any role has started.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// What role `id` plays, for messages (`receiver 2`).
    pub fn role(&self, id: usize) -> &str {
        &self.procs[id].role
    }

    /// Starts this binary as a role of `kind`, on its side of the trial, with the trial's
    /// flags and `args`; returns its id.
    pub fn spawn(&mut self, role: String, kind: Kind, args: Vec<String>) -> anyhow::Result<usize> {
        let side = self.trial.side(kind).clone();
        self.spawn_on(&side, role, kind, args)
    }

    /// Like [`Fleet::spawn`], but on `side` instead of the trial's side for `kind`: for roles
    /// spread over more places than a sending and a receiving one.
    pub fn spawn_on(
        &mut self,
        side: &Side,
        role: String,
        kind: Kind,
        args: Vec<String>,
    ) -> anyhow::Result<usize> {
        let t = &self.trial;
        let system = t.system.flag();
        let mut child = side
            .command(&t.exe)
            .arg("role")
            .args([
                "--system",
                system,
                "--endpoint",
                &side.endpoint,
                "--name",
                &t.name,
                "--kind",
                kind.flag(),
            ])
            .args(["--size", &t.size.to_string()])
            .args(["--threads", &t.threads.to_string()])
            .args(["--window", &t.window.to_string()])
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {role}"))?;
        let id = self.procs.len();
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let tx = self.events_tx.clone();
        self.readers.spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let event = match serde_json::from_str(&line) {
                    Ok(parsed) => Event::Line(parsed),
                    Err(_) => Event::Garbage(line),
                };
                if tx.send((id, event)).is_err() {
                    return;
                }
            }
            let _ = tx.send((id, Event::Closed));
        });
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let pipe = child.stderr.take().context("no stderr pipe")?;
        let tail = stderr.clone();
        self.readers.spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == STDERR_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        self.procs.push(Proc {
            role,
            stdin: child.stdin.take(),
            child,
            stderr,
            reported: false,
        });
        Ok(id)
    }

    /// Waits until each of `ids` has said it is ready.
    pub async fn until_ready(&mut self, ids: &[usize]) -> anyhow::Result<()> {
        let mut waiting: Vec<usize> = ids.to_vec();
        while let Some(&first) = waiting.first() {
            let Some((id, line)) = self.next_until(self.trial.deadline).await? else {
                bail!("{} was not ready in time", self.role(first));
            };
            match line {
                Line::Ready => waiting.retain(|&w| w != id),
                Line::Progress { .. } => {}
                other => bail!(
                    "{} said {} before everyone was ready",
                    self.role(id),
                    other.kind()
                ),
            }
        }
        Ok(())
    }

    /// Tells a sender or pinger to start.
    pub async fn go(&mut self, id: usize) -> anyhow::Result<()> {
        let proc = &mut self.procs[id];
        let stdin = proc.stdin.as_mut().context("stdin already closed")?;
        stdin
            .write_all(format!("{GO}\n").as_bytes())
            .await
            .with_context(|| format!("cannot start {}", proc.role))
    }

    /// Tells a role to report and exit.
    pub fn close_stdin(&mut self, id: usize) {
        self.procs[id].stdin = None;
    }

    /// The next line any role prints, or `None` once `until` has passed. A role that fails,
    /// prints garbage or exits without its report is an error.
    pub async fn next_until(&mut self, until: Instant) -> anyhow::Result<Option<(usize, Line)>> {
        loop {
            let Ok(event) = tokio::time::timeout_at(until, self.events.recv()).await else {
                return Ok(None);
            };
            let (id, event) = event.context("every role's output closed")?;
            match event {
                Event::Line(Line::Failed { error }) => {
                    bail!("{} failed: {error}", self.role(id))
                }
                Event::Line(line) => {
                    if matches!(
                        line,
                        Line::Sent(_) | Line::Received(_) | Line::RoundTrips(_)
                    ) {
                        self.procs[id].reported = true;
                    }
                    return Ok(Some((id, line)));
                }
                Event::Garbage(text) => {
                    bail!("{} printed {text:?}{}", self.role(id), self.stderr_tail(id))
                }
                Event::Closed if self.procs[id].reported => {}
                Event::Closed => {
                    let status = match self.wait(id).await {
                        Ok(status) => status.to_string(),
                        Err(e) => format!("{e:#}"),
                    };
                    bail!(
                        "{} exited without a report ({status}){}",
                        self.role(id),
                        self.stderr_tail(id)
                    );
                }
            }
        }
    }

    /// Closes every stdin and waits for each role to exit successfully.
    pub async fn reap(&mut self) -> anyhow::Result<()> {
        for id in 0..self.procs.len() {
            self.close_stdin(id);
        }
        for id in 0..self.procs.len() {
            let status = self.wait(id).await?;
            if !status.success() {
                bail!(
                    "{} exited with {status}{}",
                    self.role(id),
                    self.stderr_tail(id)
                );
            }
        }
        Ok(())
    }

    /// How role `id` exited; kills it if it has not exited within [`EXIT_WITHIN`].
    async fn wait(&mut self, id: usize) -> anyhow::Result<ExitStatus> {
        let proc = &mut self.procs[id];
        match tokio::time::timeout(EXIT_WITHIN, proc.child.wait()).await {
            Ok(status) => status.with_context(|| format!("cannot wait for {}", proc.role)),
            Err(_) => {
                let _ = proc.child.kill().await;
                bail!(
                    "{} did not exit within {EXIT_WITHIN:?} and was killed",
                    proc.role
                )
            }
        }
    }

    fn stderr_tail(&self, id: usize) -> String {
        let tail = self.procs[id]
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if tail.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!("\n  stderr:\n  {}", lines.join("\n  "))
    }
}
