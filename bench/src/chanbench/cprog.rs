//! The contenders whose roles are C programs (`bench/c/`, compiled next to this binary by
//! `scripts/bench-channels.sh`): finding one, asking its client library's version, and a role
//! process replacing itself with it.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _};

use super::ctx::{emit, RoleArgs};
use super::protocol::Line;

/// Where `program` is: next to this binary.
pub fn path(program: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this binary's path")?;
    let dir = exe.parent().context("this binary has no directory")?;
    Ok(dir.join(program))
}

/// `program`'s client library and version (`libnats 3.4.1`), which also shows it runs.
pub fn version(program: &str) -> anyhow::Result<String> {
    let path = path(program)?;
    if !path.is_file() {
        bail!(
            "{} is missing: scripts/bench-channels.sh compiles it from bench/c/ (it needs \
             libnats-dev and libzmq3-dev)",
            path.display()
        );
    }
    let out = Command::new(&path)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    if !out.status.success() {
        bail!(
            "{} --version: {}{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Replaces this role process with `program`, passing its flags on: it keeps the pid, stdin and
/// stdout, so the harness sees no difference. Returns only if that fails, after printing why.
pub fn exec(program: &str, args: &RoleArgs) -> ExitCode {
    let error = match path(program) {
        Ok(path) => {
            let err = Command::new(&path).args(flags(args)).exec();
            format!("cannot run {}: {err}", path.display())
        }
        Err(e) => format!("{e:#}"),
    };
    emit(&Line::Failed { error });
    ExitCode::FAILURE
}

/// The flags the C programs read (`role_parse` in `bench/c/role.c`).
fn flags(args: &RoleArgs) -> Vec<String> {
    [
        ("--kind", args.kind.flag().to_string()),
        ("--endpoint", args.endpoint.clone()),
        ("--name", args.name.clone()),
        ("--size", args.size.to_string()),
        ("--index", args.index.to_string()),
        ("--senders", args.senders.to_string()),
        ("--count", args.count.to_string()),
        ("--warmup", args.warmup.to_string()),
        ("--window", args.window.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_string(), value])
    .collect()
}
