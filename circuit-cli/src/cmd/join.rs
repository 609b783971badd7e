//! `circuit join`: asks the daemon to join the mesh through nodes already in it. Returns once
//! the daemon sees the node at one of the addresses as a member (membership then spreads by
//! gossip: `circuit nodes` shows it), or fails when none became one within the timeout.

use std::process::ExitCode;

use circuit_sdk::proto::Request;

use super::{expect_done, Ctx};
use crate::{output, parse};

/// Arguments of `circuit join`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    circuit join 10.0.0.1:7711\n  \
    circuit --addr h5:7711 join h1 h2   # the first that answers is enough\n  \
    circuit join --timeout 1m h1        # a node that is still starting")]
pub struct Args {
    /// Mesh addresses of nodes already in the mesh (port 7711 when left out, as for
    /// `circuitd --join`).
    #[arg(value_name = "HOST[:PORT]", required = true, value_parser = parse::mesh_addr)]
    pub addrs: Vec<String>,

    /// How long to wait for a node at one of the addresses to become a member (1ms to 1h)
    /// [default: 10s]. An address where nothing listens (connection refused for 2 s) fails
    /// sooner.
    #[arg(long, value_name = "DUR", value_parser = parse::duration)]
    pub timeout: Option<humantime::Duration>,
}

/// Joins and prints `joined via ADDR` (nothing, with `--json`: the reply is empty).
pub async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let client = ctx.connect().await?;
    let text = joined(&args.addrs);
    let request = Request::Join {
        addrs: args.addrs,
        timeout_ms: args.timeout.map(parse::millis),
    };
    expect_done(client.call(request).await?)?;
    if !ctx.json {
        output::line(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a successful join prints. The reply does not say which address answered.
fn joined(addrs: &[String]) -> String {
    match addrs {
        [one] => format!("joined via {one}"),
        many => format!("joined via one of {}", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_addresses() {
        assert_eq!(joined(&["h1:7711".into()]), "joined via h1:7711");
        assert_eq!(
            joined(&["h1:7711".into(), "h2:7711".into()]),
            "joined via one of h1:7711, h2:7711"
        );
    }
}
