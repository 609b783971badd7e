//! Carrying a plan out: each step's requests in order, each change printed once it is made
//! (`+ worker fetch (on n1)`), a summary line, and the first failure ends the run. With
//! `--dry-run` the plan is printed and nothing is sent; with `--json`, one document at the end.

use std::process::ExitCode;

use circuit_sdk::proto::{ErrorCode, Reply, Request, WorkerInfo, WorkerState};
use circuit_sdk::Client;
use serde::Serialize;

use super::plan::{Action, Change, Counts, Kind, Op, Plan};
use crate::cmd::{expect_done, expect_workers, on, unexpected, Ctx};
use crate::error::{self, CliError};
use crate::output;

/// Which command runs the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    /// `circuit apply`.
    Apply,
    /// `circuit down`.
    Down,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "apply",
            Self::Down => "down",
        }
    }
}

/// A run of a plan.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// Apply or down.
    pub verb: Verb,
    /// The manifest's name.
    pub manifest: &'a str,
    /// Print the plan only.
    pub dry_run: bool,
}

/// A change and whether it was made, for `--json`.
#[derive(Debug, Serialize)]
struct Done<'a> {
    #[serde(flatten)]
    change: &'a Change,
    done: bool,
}

/// The `--json` document of a run.
#[derive(Debug, Serialize)]
struct Report<'a> {
    command: Verb,
    manifest: &'a str,
    dry_run: bool,
    ok: bool,
    changes: Vec<Done<'a>>,
    unchanged: &'a [Change],
    warnings: &'a [String],
    conflicts: &'a [String],
    summary: Counts,
    error: Option<String>,
}

impl Run<'_> {
    /// Prints the plan (dry run), or makes its changes step by step until one fails.
    pub async fn execute(
        &self,
        ctx: &Ctx,
        client: &Client,
        mut plan: Plan,
    ) -> anyhow::Result<ExitCode> {
        for warning in &plan.warnings {
            eprintln!("warning: {warning}");
        }
        let total = plan.counts();
        if self.dry_run {
            if ctx.json {
                let changes = plan.changes().map(|change| Done {
                    change,
                    done: false,
                });
                self.report(&plan, changes.collect(), total, None)?;
            } else {
                for change in plan.changes() {
                    output::line(&change.line())?;
                }
                output::line(&self.would(total))?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        let mut made = Counts {
            unchanged: total.unchanged,
            ..Counts::default()
        };
        let mut failure = None;
        let mut steps_done = 0;
        for step in &mut plan.steps {
            if let Err(e) = run_step(client, step).await {
                failure = Some(e);
                break;
            }
            for change in &step.changes {
                made.add(change);
                if !ctx.json {
                    output::line(&change.line())?;
                }
            }
            steps_done += 1;
        }
        let left = total.created + total.replaced + total.removed
            - (made.created + made.replaced + made.removed);
        if ctx.json {
            let changes = plan.steps.iter().enumerate().flat_map(|(i, step)| {
                step.changes.iter().map(move |change| Done {
                    change,
                    done: i < steps_done,
                })
            });
            let message = failure.as_ref().map(error::render);
            self.report(&plan, changes.collect(), made, message)?;
        }
        match failure {
            None => {
                if !ctx.json {
                    output::line(&self.summary(made))?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Some(e) => {
                error::print(&e);
                eprintln!(
                    "{}: stopped at the first failure: {}; {left} change{} not made",
                    self.verb.as_str(),
                    done_counts(made),
                    if left == 1 { "" } else { "s" }
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }

    /// `apply: 3 created, 1 replaced, 1 removed, 6 unchanged`, `apply: no changes (8 unchanged)`,
    /// `down: 8 removed`, `down: nothing to remove`.
    fn summary(&self, c: Counts) -> String {
        let verb = self.verb.as_str();
        match (self.verb, c.none()) {
            (Verb::Apply, true) => format!("{verb}: no changes ({} unchanged)", c.unchanged),
            (Verb::Apply, false) => {
                format!("{verb}: {}, {} unchanged", done_counts(c), c.unchanged)
            }
            (Verb::Down, true) => format!("{verb}: nothing to remove"),
            (Verb::Down, false) => format!("{verb}: {} removed", c.removed),
        }
    }

    /// The summary of a dry run: `apply --dry-run: would create 3, replace 1, remove 1; 6
    /// unchanged; nothing was changed`.
    fn would(&self, c: Counts) -> String {
        let verb = self.verb.as_str();
        if c.none() {
            return match self.verb {
                Verb::Apply => format!("{verb} --dry-run: no changes ({} unchanged)", c.unchanged),
                Verb::Down => format!("{verb} --dry-run: nothing to remove"),
            };
        }
        match self.verb {
            Verb::Apply => format!(
                "{verb} --dry-run: would create {}, replace {}, remove {}; {} unchanged; \
                 nothing was changed",
                c.created, c.replaced, c.removed, c.unchanged
            ),
            Verb::Down => format!(
                "{verb} --dry-run: would remove {}; nothing was changed",
                c.removed
            ),
        }
    }

    fn report(
        &self,
        plan: &Plan,
        changes: Vec<Done>,
        summary: Counts,
        error: Option<String>,
    ) -> anyhow::Result<()> {
        output::json(&Report {
            command: self.verb,
            manifest: self.manifest,
            dry_run: self.dry_run,
            ok: error.is_none(),
            changes,
            unchanged: &plan.unchanged,
            warnings: &plan.warnings,
            conflicts: &[],
            summary,
            error,
        })
    }
}

/// Prints why a plan cannot be applied, one `error:` line per reason; changes nothing.
pub fn refuse(
    ctx: &Ctx,
    manifest: &str,
    dry_run: bool,
    conflicts: &[String],
) -> anyhow::Result<ExitCode> {
    for conflict in conflicts {
        error::print(&CliError::plain(conflict));
    }
    eprintln!("apply: nothing was changed");
    if ctx.json {
        output::json(&Report {
            command: Verb::Apply,
            manifest,
            dry_run,
            ok: false,
            changes: Vec::new(),
            unchanged: &[],
            warnings: &[],
            conflicts,
            summary: Counts::default(),
            error: Some("the manifest cannot be applied".into()),
        })?;
    }
    Ok(ExitCode::FAILURE)
}

/// `3 created, 1 replaced, 1 removed`.
fn done_counts(c: Counts) -> String {
    format!(
        "{} created, {} replaced, {} removed",
        c.created, c.replaced, c.removed
    )
}

/// Sends a step's requests in order; a started worker's node goes into its change.
async fn run_step(client: &Client, step: &mut super::plan::Step) -> anyhow::Result<()> {
    for action in &step.actions {
        let started = act(client, action)
            .await
            .map_err(|e| CliError::plain(format!("{}: {}", what(action), error::render(&e))))?;
        for w in started {
            // A copy that could not start ends the run before the next copy is replaced.
            if w.state == WorkerState::Failed {
                let why = w.reason.clone().unwrap_or_else(|| "it failed".into());
                return Err(CliError::plain(format!(
                    "worker {} did not start: {why}; the copies not yet replaced run as before",
                    w.name
                )));
            }
            let created = step
                .changes
                .iter_mut()
                .find(|c| c.kind == Kind::Worker && c.name == w.name && c.op == Op::Create);
            if let Some(change) = created {
                if change.node.as_deref() != Some(&w.node) {
                    change.detail.push_str(&format!(": on {}", w.node));
                    change.node = Some(w.node.clone());
                }
            }
        }
    }
    Ok(())
}

/// What an action was doing, for its error: `cannot create channel docs on n2`.
fn what(action: &Action) -> String {
    match action {
        Action::CreateChannel { name, node, .. } => match node {
            Some(node) => format!("cannot create channel {name} on {node}"),
            None => format!("cannot create channel {name}"),
        },
        Action::RemoveChannel { name, node } => format!("cannot remove channel {name} on {node}"),
        Action::RemoveWorker { name, node } => format!("cannot remove worker {name} on {node}"),
        Action::Place(p) => {
            let name = p.spec.name.as_deref().unwrap_or("?");
            if p.replicas > 1 {
                format!("cannot start worker {name} (replicas {})", p.replicas)
            } else {
                format!("cannot start worker {name}")
            }
        }
    }
}

/// Sends one request; returns the workers it started.
async fn act(client: &Client, action: &Action) -> anyhow::Result<Vec<WorkerInfo>> {
    match action {
        Action::CreateChannel {
            name,
            capacity,
            node,
            replicas,
            replica_labels,
            storage,
        } => {
            let request = Request::ChanCreate {
                name: name.clone(),
                capacity: *capacity,
                exist_ok: false,
                replicas: (*replicas != 1).then_some(*replicas),
                replica_labels: replica_labels.clone(),
                storage: storage.clone(),
            };
            match client.call(on(node.clone(), request)).await? {
                Reply::Chan(_) => Ok(Vec::new()),
                other => Err(unexpected("a channel", &other)),
            }
        }
        Action::RemoveChannel { name, node } => {
            let request = Request::ChanRemove { name: name.clone() };
            absent_is_fine(client.call(on(Some(node.clone()), request)).await)?;
            Ok(Vec::new())
        }
        Action::RemoveWorker { name, node } => {
            let request = Request::Remove {
                name: name.clone(),
                force: true,
            };
            absent_is_fine(client.call(on(Some(node.clone()), request)).await)?;
            Ok(Vec::new())
        }
        Action::Place(p) => {
            let workers = expect_workers(client.call(Request::Place(p.as_ref().clone())).await?)?;
            if workers.is_empty() {
                return Err(CliError::hinted(
                    "circuitd replied that it started no worker",
                    "are circuit and circuitd the same version?",
                ));
            }
            Ok(workers)
        }
    }
}

/// A remove whose target is gone already has done its job.
fn absent_is_fine(reply: Result<Reply, circuit_sdk::Error>) -> anyhow::Result<()> {
    match reply {
        Ok(reply) => expect_done(reply),
        Err(e) if e.code() == Some(ErrorCode::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(verb: Verb) -> Run<'static> {
        Run {
            verb,
            manifest: "pipeline",
            dry_run: false,
        }
    }

    #[test]
    fn summaries_count_what_was_done() {
        let c = Counts {
            created: 3,
            replaced: 1,
            removed: 1,
            unchanged: 6,
        };
        assert_eq!(
            run(Verb::Apply).summary(c),
            "apply: 3 created, 1 replaced, 1 removed, 6 unchanged"
        );
        assert_eq!(
            run(Verb::Apply).would(c),
            "apply --dry-run: would create 3, replace 1, remove 1; 6 unchanged; nothing was changed"
        );
        let none = Counts {
            unchanged: 8,
            ..Counts::default()
        };
        assert_eq!(
            run(Verb::Apply).summary(none),
            "apply: no changes (8 unchanged)"
        );
        assert_eq!(
            run(Verb::Down).summary(Counts::default()),
            "down: nothing to remove"
        );
        let removed = Counts {
            removed: 8,
            ..Counts::default()
        };
        assert_eq!(run(Verb::Down).summary(removed), "down: 8 removed");
    }
}
