//! `circuit install` / `circuit uninstall`: circuitd on hosts over SSH (stub, being built).

use std::process::ExitCode;

use super::Ctx;

/// Arguments of `circuit install`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Arguments of `circuit uninstall`.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {}

/// Installs or upgrades circuitd on every host.
pub fn run(ctx: &Ctx, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet (key {:?})", ctx.key_file())
}

/// Removes circuitd from every host.
pub fn run_uninstall(_ctx: &Ctx, _args: UninstallArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
