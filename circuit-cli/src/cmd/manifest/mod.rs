//! `circuit apply FILE`, `circuit down FILE` and `circuit status FILE`: a TOML manifest of
//! channels and workers, compared with the mesh and made real (docs/MANIFESTS.md). One file per
//! step: `file` (the TOML) → `validate` (specs) → `mesh` (what runs) → `plan` (pure) → `execute`.

mod execute;
mod file;
mod mesh;
mod plan;
mod status;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::Ctx;
use crate::error::CliError;

pub use status::run as status;

/// Arguments of `circuit apply`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit apply examples/pipeline/pipeline.toml\n  \
    circuit apply --dry-run pipeline.toml   # print the plan, change nothing\n  \
    circuit status pipeline.toml            # every declared channel and worker\n\n\
Each change is one line: `+` created, `~` replaced (stopped, removed, started again), `-`\n\
removed. Workers carry the label circuit.manifest=NAME; channels are never removed by apply.\n\
A manifest that declares nothing is refused, and so is a plan that would remove every worker\n\
the manifest made (all renamed, or a file cut short) unless --prune is given; `circuit down\n\
FILE` is the way to remove everything. The format: docs/MANIFESTS.md.")]
pub struct ApplyArgs {
    /// The manifest: a TOML file of [channels.NAME] and [workers.NAME] tables.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Print what apply would do, and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Allow a plan that removes every worker the manifest made (they are all renamed or no
    /// longer declared); without it such a plan is refused.
    #[arg(long)]
    pub prune: bool,
}

/// Arguments of `circuit down`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit down examples/pipeline/pipeline.toml\n  \
    circuit down --dry-run pipeline.toml\n\n\
Stops and removes every worker with the label circuit.manifest=NAME, then removes the\n\
channels the manifest declares (their values are dropped). What is absent already is fine.")]
pub struct DownArgs {
    /// The manifest.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Print what down would remove, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Creates what the manifest declares and is missing, replaces what differs, removes the
/// workers it made and no longer declares. Nothing is done unless the whole plan can be. A
/// manifest that declares nothing is refused before circuitd is contacted: applied, it could
/// only remove (an empty or cut-short file, most likely); `down` is the way to do that.
pub async fn apply(ctx: &Ctx, args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let manifest = load(ctx, &args.file)?;
    if manifest.channels.is_empty() && manifest.workers.is_empty() {
        let shown = args.file.display();
        return Err(CliError::plain(format!(
            "{shown}: the manifest declares no channel and no worker, so applying it could only \
             remove; nothing was changed — to remove what manifest \"{}\" made, use `circuit \
             down {shown}`",
            manifest.name
        )));
    }
    let client = ctx.connect().await?;
    let mesh = mesh::observe(&client).await?;
    match plan::apply(&manifest, &mesh, args.prune) {
        Ok(plan) => {
            let run = execute::Run {
                verb: execute::Verb::Apply,
                manifest: &manifest.name,
                dry_run: args.dry_run,
            };
            run.execute(ctx, &client, plan).await
        }
        Err(conflicts) => execute::refuse(ctx, &manifest.name, args.dry_run, &conflicts),
    }
}

/// Removes the workers the manifest made (by their label), then its declared channels.
pub async fn down(ctx: &Ctx, args: DownArgs) -> anyhow::Result<ExitCode> {
    let manifest = load(ctx, &args.file)?;
    let client = ctx.connect().await?;
    let mesh = mesh::observe(&client).await?;
    let run = execute::Run {
        verb: execute::Verb::Down,
        manifest: &manifest.name,
        dry_run: args.dry_run,
    };
    run.execute(ctx, &client, plan::down(&manifest, &mesh))
        .await
}

/// Reads and checks the manifest; nothing is contacted before it is known to be good.
fn load(ctx: &Ctx, path: &Path) -> anyhow::Result<validate::Manifest> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::plain(format!("cannot read {shown}: {}", io_message(&e))))?;
    // With circuitd on this host, relative paths in the manifest mean what they mean from the
    // manifest's directory; through --addr they go as written. Env files are read by us, from
    // the manifest's directory, either way.
    let dir = path.parent().unwrap_or(Path::new(""));
    let base = if ctx.is_local() {
        let dir = if dir.is_relative() {
            std::env::current_dir()
                .map_err(|e| CliError::plain(format!("cannot read the current directory: {e}")))?
                .join(dir)
        } else {
            dir.to_path_buf()
        };
        Some(dir)
    } else {
        None
    };
    let source = validate::Source {
        file: &shown,
        text: &text,
        base: base.as_deref(),
        dir,
    };
    validate::parse(source).map_err(CliError::plain)
}

/// An I/O error's text without the `(os error 2)` suffix.
fn io_message(err: &std::io::Error) -> String {
    let text = err.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_string()
}
