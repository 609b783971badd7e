//! `circuit key ls` and `circuit key rotate NEWFILE`: the cluster keys of every node, and a
//! rotation to a new key without stopping anything. A rotation runs three steps, each on
//! every node before the next: add (accept the new key too), use (send with it), retire
//! (hold only it). Each step is idempotent, so a rotation that stopped half-way is finished
//! by running it again.

use std::path::PathBuf;
use std::process::ExitCode;

use circuit_sdk::proto::{KeyStatus, KeyStep, NodeState, Reply, Request};
use circuit_sdk::secure::read_key_file;
use circuit_sdk::Client;

use super::{expect_nodes, on, unexpected, Ctx};
use crate::error::CliError;
use crate::output::{self, Table};

/// Arguments of `circuit key`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit key ls\n  \
    circuit keygen new.key && circuit key rotate new.key")]
pub struct Args {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeyCommand {
    /// List the fingerprints of the keys each node holds (the sending key first).
    #[command(after_help = "Examples:\n  circuit key ls\n  circuit key ls --json")]
    Ls,
    /// Roll every node of the mesh to the key in NEWFILE (from `circuit keygen`).
    #[command(after_help = "Examples:\n  \
        circuit keygen /etc/circuit/new.key && circuit key rotate /etc/circuit/new.key\n  \
        circuit key rotate new.key --step add      # then --step use, then --step retire\n\n\
        Each daemon writes its new keys to its own --key-file. Clients that connect over TCP\n\
        (--addr) need the new key file once the retire step has run.")]
    Rotate {
        /// The new key file (its first key is the new key).
        #[arg(value_name = "NEWFILE")]
        file: PathBuf,
        /// Run one step only (on every node) instead of all three in order.
        #[arg(long, value_enum)]
        step: Option<Step>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Step {
    /// Every node accepts the new key too.
    Add,
    /// Every node sends with the new key.
    Use,
    /// Every node holds only the new key; the old one is shut out.
    Retire,
}

impl From<Step> for KeyStep {
    fn from(s: Step) -> Self {
        match s {
            Step::Add => KeyStep::Add,
            Step::Use => KeyStep::Use,
            Step::Retire => KeyStep::Retire,
        }
    }
}

/// Runs `key ls` or `key rotate`.
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    match args.command {
        KeyCommand::Ls => {
            let (statuses, failed) = every_node(&client, |_| Request::KeyList).await?;
            print(ctx, &statuses)?;
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        KeyCommand::Rotate { file, step } => {
            let key = read_key_file(&file)?.swap_remove(0);
            let steps: Vec<KeyStep> = match step {
                Some(s) => vec![s.into()],
                None => vec![KeyStep::Add, KeyStep::Use, KeyStep::Retire],
            };
            let mut last = Vec::new();
            for step in steps {
                let request = |_: &str| Request::KeyRotate {
                    step,
                    key: key.to_hex(),
                };
                let (statuses, failed) = every_node(&client, request).await?;
                if failed {
                    print(ctx, &statuses)?;
                    return Err(CliError::hinted(
                        format!(
                            "the {step:?} step failed on some nodes (see above); nothing later ran"
                        ),
                        "fix them and run the same command again: every step is safe to repeat",
                    ));
                }
                if !ctx.json {
                    output::line(&format!(
                        "{}: done on {} node(s)",
                        step_name(step),
                        statuses.len()
                    ))?;
                }
                last = statuses;
            }
            print(ctx, &last)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn step_name(step: KeyStep) -> &'static str {
    match step {
        KeyStep::Add => "add (every node accepts the new key)",
        KeyStep::Use => "use (every node sends with the new key)",
        KeyStep::Retire => "retire (the old keys are shut out)",
    }
}

/// Runs `request` on every node that is up; a node that fails gets a row with its error.
/// Nodes that are down are listed and skipped: they need the new key file before they return.
async fn every_node(
    client: &Client,
    request: impl Fn(&str) -> Request,
) -> anyhow::Result<(Vec<Result<KeyStatus, (String, String)>>, bool)> {
    let nodes = expect_nodes(client.call(Request::Nodes).await?)?;
    let mut out = Vec::new();
    let mut failed = false;
    for node in nodes {
        if !node.state.is_up() {
            if node.state != NodeState::Left {
                out.push(Err((node.name, format!("skipped: {}", node.state))));
            }
            continue;
        }
        let target = (!node.is_self).then(|| node.name.clone());
        match client.call(on(target, request(&node.name))).await {
            Ok(Reply::Keys(status)) => out.push(Ok(status)),
            Ok(other) => return Err(unexpected("keys", &other)),
            Err(e) => {
                failed = true;
                out.push(Err((node.name, e.to_string())));
            }
        }
    }
    Ok((out, failed))
}

fn print(ctx: &Ctx, statuses: &[Result<KeyStatus, (String, String)>]) -> anyhow::Result<()> {
    if ctx.json {
        let rows: Vec<serde_json::Value> = statuses
            .iter()
            .map(|s| match s {
                Ok(k) => serde_json::to_value(k).unwrap_or_default(),
                Err((node, error)) => serde_json::json!({"node": node, "error": error}),
            })
            .collect();
        return output::json_list("nodes", &rows);
    }
    let mut table = Table::new(&["node", "keys (sending first)", "file"]);
    for s in statuses {
        match s {
            Ok(k) => table.row(vec![
                k.node.clone(),
                if k.fingerprints.is_empty() {
                    "none (loopback development mode)".into()
                } else {
                    k.fingerprints.join(" ")
                },
                k.file.clone().unwrap_or_else(|| "-".into()),
            ]),
            Err((node, error)) => {
                table.row(vec![node.clone(), format!("error: {error}"), "-".into()])
            }
        }
    }
    table.print()?;
    Ok(())
}
