//! `circuit apply` / `circuit down` / `circuit status FILE`: TOML manifests (stub, being built).

use std::process::ExitCode;

use super::Ctx;

/// Arguments of `circuit apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {}

/// Arguments of `circuit down`.
#[derive(Debug, clap::Args)]
pub struct DownArgs {}

/// Creates what the manifest declares and is missing, replaces what differs.
pub async fn apply(_ctx: &Ctx, _args: ApplyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}

/// Removes what the manifest declares.
pub async fn down(_ctx: &Ctx, _args: DownArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
