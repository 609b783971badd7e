//! `circuit status`: the daemon's description of itself as `key: value` lines; `circuit status
//! FILE`: the channels and workers a manifest declares, as they are (see `manifest`).

use std::path::PathBuf;
use std::process::ExitCode;

use circuit_sdk::proto::{DaemonStatus, Reply, Request};

use super::{unexpected, Ctx};
use crate::output;

/// Arguments of `circuit status`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit status\n  \
    circuit --addr h1:7711 status --json\n  \
    circuit status examples/pipeline/pipeline.toml   # exits 1 if something is missing or failed")]
pub struct Args {
    /// A manifest: show its channels and workers instead of the daemon.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// Prints the status (or the JSON document, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    if let Some(file) = args.file {
        return super::manifest::status(ctx, &file).await;
    }
    let client = ctx.connect().await?;
    let status = match client.call(Request::Status).await? {
        Reply::Status(status) => status,
        other => return Err(unexpected("status", &other)),
    };
    if ctx.json {
        output::json(&status)?;
    } else {
        output::line(render(&status).trim_end())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `key: value` lines, in a fixed order that scripts can rely on.
fn render(s: &DaemonStatus) -> String {
    let counts: Vec<String> = s
        .workers
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(state, n)| format!("{state} {n}"))
        .collect();
    let fields = [
        ("node", s.name.clone()),
        ("version", s.version.clone()),
        ("protocol", s.protocol.to_string()),
        ("pid", s.pid.to_string()),
        ("uptime", output::duration_ms(s.uptime_ms)),
        ("data dir", s.data_dir.clone()),
        ("socket", s.socket.clone()),
        ("listen", s.listen.clone().unwrap_or_else(|| "-".into())),
        ("http", s.http.clone().unwrap_or_else(|| "-".into())),
        (
            "workers",
            if counts.is_empty() {
                "none".into()
            } else {
                counts.join(", ")
            },
        ),
        ("channels", s.channels.to_string()),
    ];
    fields
        .iter()
        .map(|(key, value)| format!("{key}: {value}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use circuit_sdk::proto::WorkerState;

    #[test]
    fn status_lines() {
        let status = DaemonStatus {
            name: "h1".into(),
            version: "0.1.0".into(),
            protocol: 1,
            pid: 42,
            started_at_ms: 0,
            uptime_ms: 3_840_000,
            data_dir: "/var/lib/circuit".into(),
            socket: "/run/circuit/circuitd.sock".into(),
            listen: None,
            http: Some("127.0.0.1:9711".into()),
            workers: [(WorkerState::Exited, 1), (WorkerState::Running, 3)].into(),
            channels: 2,
        };
        let text = render(&status);
        assert!(text.starts_with("node: h1\nversion: 0.1.0\n"), "{text}");
        assert!(
            text.contains("uptime: 1h4m\n") && text.contains("listen: -\nhttp: 127.0.0.1:9711\n"),
            "{text}"
        );
        assert!(
            text.ends_with("workers: running 3, exited 1\nchannels: 2\n"),
            "{text}"
        );
    }
}
