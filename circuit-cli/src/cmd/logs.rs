//! `circuit logs`: streams workers' output. Lines from a worker's stdout go to our stdout and
//! lines from its stderr to our stderr, like `docker logs`; `-f` ends with the worker's exit
//! code. Several workers at once are interleaved, each line prefixed with its worker's name. On
//! a terminal, control characters in a line are shown escaped: a worker cannot move the
//! operator's cursor or retitle the window.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use circuit_sdk::proto::{Item, LogLine, LogStream, LogsRequest, Reply, Request, WorkerEnd};
use circuit_sdk::{Client, Next};
use futures::stream::{FuturesUnordered, StreamExt};

use super::{exit_code, unexpected, Ctx, NodeFlag};
use crate::{output, parse};

/// Arguments of `circuit logs`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit logs web\n  \
    circuit logs -f --tail 20 --timestamps web\n  \
    circuit logs --since 10m web worker-2\n  \
    circuit logs --node h3 web")]
pub struct Args {
    /// Keep printing new lines until the workers end, then exit with the exit code of the first
    /// that did not exit 0 (0 if all did).
    #[arg(short, long)]
    pub follow: bool,

    /// Start with only the last N lines (of each worker).
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<usize>,

    /// Only lines written in the last DURATION (`30s`, `10m`, `2h`).
    #[arg(long, value_name = "DURATION", value_parser = parse::duration)]
    pub since: Option<humantime::Duration>,

    /// Only the workers' standard output.
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,

    /// Only the workers' standard error.
    #[arg(long)]
    pub stderr: bool,

    /// Prefix each line with the time it was read (RFC 3339, UTC, milliseconds).
    #[arg(short, long)]
    pub timestamps: bool,

    /// The workers (a replica set's name stands for all its copies); with more than one, each
    /// line starts with its worker's name.
    #[arg(value_name = "WORKER", add = crate::complete::workers(), required = true)]
    pub names: Vec<String>,

    #[command(flatten)]
    pub node: NodeFlag,
}

/// How lines are printed.
struct Printer {
    json: bool,
    timestamps: bool,
    /// Lines older than this are skipped (`--since`).
    since_ms: u64,
    /// Prefix lines with their worker's name.
    prefix: bool,
    /// Where each destination is a terminal: control characters are escaped there.
    stdout_tty: bool,
    stderr_tty: bool,
}

/// Prints the log lines as they arrive (one JSON object per line, with `--json`).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let stream = match (args.stdout, args.stderr) {
        (true, _) => Some(LogStream::Stdout),
        (_, true) => Some(LogStream::Stderr),
        _ => None,
    };
    let since_ms = args
        .since
        .map_or(0, |d| output::now_ms().saturating_sub(parse::millis(d)));
    let client = ctx.connect().await?;
    let printer = |prefix: bool| Printer {
        json: ctx.json,
        timestamps: args.timestamps,
        since_ms,
        prefix,
        stdout_tty: io::stdout().is_terminal(),
        stderr_tty: io::stderr().is_terminal(),
    };
    let node = args.node.node.as_deref();
    let request = |name: &str| {
        args.node.wrap(Request::Logs(LogsRequest {
            name: name.to_string(),
            follow: args.follow,
            tail: args.tail,
            stream,
            lifecycle: true,
        }))
    };
    let names = match &args.names[..] {
        // A worker by that name, or else a set: its copies.
        [name] => match one(&client, request(name), name, &printer(false)).await {
            Err(e) if super::sets::not_found(&e) => {
                match super::sets::copies_of(&client, name, node).await? {
                    Some(copies) => copies,
                    None => return Err(e),
                }
            }
            done => return done,
        },
        many => super::sets::expand(&client, many.to_vec(), node).await?,
    };
    let printer = printer(true);
    if !args.follow {
        // What is kept, of every worker, in the order it was written.
        let mut lines = Vec::new();
        for name in &names {
            let got = collect(&client, request(name)).await?;
            lines.extend(got.into_iter().map(|line| (name.as_str(), line)));
        }
        lines.sort_by_key(|(_, line)| line.ts_ms);
        for (name, line) in &lines {
            printer.print(name, line)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (client, printer, request) = (&client, &printer, &request);
    let mut follows: FuturesUnordered<_> = names
        .iter()
        .map(|name| async move {
            let end = follow(client, request(name), name, printer).await;
            (name, end)
        })
        .collect();
    let mut code = 0;
    while let Some((name, end)) = follows.next().await {
        if let Some(end) = end? {
            let _ = writeln!(
                io::stderr().lock(),
                "circuit: {name}: {}",
                output::worker_end(&end)
            );
            if code == 0 {
                code = end.shell_code();
            }
        }
    }
    Ok(exit_code(code))
}

/// One worker: its lines, then (following) its end, which gives the exit code.
async fn one(
    client: &Client,
    request: Request,
    name: &str,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    match follow(client, request, name, printer).await? {
        None => Ok(ExitCode::SUCCESS),
        Some(end) => {
            let _ = writeln!(io::stderr().lock(), "circuit: {}", output::worker_end(&end));
            Ok(exit_code(end.shell_code()))
        }
    }
}

/// Prints a worker's lines as they arrive; returns how it ended when following.
async fn follow(
    client: &Client,
    request: Request,
    name: &str,
    printer: &Printer,
) -> anyhow::Result<Option<WorkerEnd>> {
    let mut replies = client.stream(request).await?;
    loop {
        match replies.next().await? {
            Next::Item(Item::Log(line)) => printer.print(name, &line)?,
            Next::Item(_) => {}
            Next::End(Reply::Done) => return Ok(None),
            Next::End(Reply::End(end)) => return Ok(Some(end)),
            Next::End(other) => return Err(unexpected("done or end", &other)),
        }
    }
}

/// A worker's lines kept now (the request does not follow).
async fn collect(client: &Client, request: Request) -> anyhow::Result<Vec<LogLine>> {
    let mut replies = client.stream(request).await?;
    let mut lines = Vec::new();
    loop {
        match replies.next().await? {
            Next::Item(Item::Log(line)) => lines.push(line),
            Next::Item(_) => {}
            Next::End(Reply::Done | Reply::End(_)) => return Ok(lines),
            Next::End(other) => return Err(unexpected("done", &other)),
        }
    }
}

impl Printer {
    /// Writes one line of worker `name` to the stream it came from. A write error (a closed
    /// pipe) is returned as the bare `io::Error`, so that `main` can tell a gone reader from a
    /// failure.
    fn print(&self, name: &str, line: &LogLine) -> io::Result<()> {
        if line.ts_ms < self.since_ms {
            return Ok(());
        }
        if self.json {
            let mut doc = serde_json::to_value(line).map_err(io::Error::other)?;
            if self.prefix {
                doc["worker"] = name.into();
            }
            let mut out = io::stdout().lock();
            writeln!(out, "{doc}")?;
            return out.flush();
        }
        let tty = match line.stream {
            LogStream::Stdout => self.stdout_tty,
            LogStream::Stderr | LogStream::Circuit => self.stderr_tty,
        };
        let mut text = String::with_capacity(line.line.len() + 40);
        if self.prefix {
            text.push_str(name);
            text.push_str(" | ");
        }
        if self.timestamps {
            text.push_str(&output::timestamp(line.ts_ms));
            text.push(' ');
        }
        let body = if tty {
            escape_controls(&line.line)
        } else {
            Cow::Borrowed(line.line.as_str())
        };
        if line.stream == LogStream::Circuit {
            // The supervisor's note between runs, marked so nobody takes it for the worker's.
            text.push_str("--- circuit: ");
            text.push_str(&body);
            text.push_str(" ---");
        } else {
            text.push_str(&body);
        }
        text.push('\n');
        match line.stream {
            LogStream::Stdout => io::stdout().lock().write_all(text.as_bytes()),
            LogStream::Stderr | LogStream::Circuit => {
                io::stderr().lock().write_all(text.as_bytes())
            }
        }
    }
}

/// `line` with its control characters (but tab) shown as escapes: `ESC]0;x` becomes
/// `\x1b]0;x`, so a terminal prints it instead of obeying it.
fn escape_controls(line: &str) -> Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        match c {
            '\t' => out.push(c),
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_but_text_and_tabs_are_kept() {
        assert!(matches!(
            escape_controls("plain\ttext ü 漢"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_controls("\u{1b}]0;owned\u{7}title\r\u{9b}2J"),
            "\\x1b]0;owned\\x07title\\x0d\\x9b2J"
        );
        assert_eq!(escape_controls("a\u{0}b\u{7f}"), "a\\x00b\\x7f");
    }
}
