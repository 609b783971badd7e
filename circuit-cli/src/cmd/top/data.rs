//! Where `circuit top`'s figures come from: the daemon it is aimed at, asked at each refresh
//! for the node table, the mesh's workers and the mesh's channels — three requests at once on
//! one connection, which is kept between refreshes and made again after any failure.

use std::time::Duration;

use circuit_sdk::proto::Request;
use circuit_sdk::Client;

use super::snapshot::Sample;
use crate::cmd::{expect_nodes, expect_workers, Ctx};
use crate::error::CliError;

/// Longest the three requests of one refresh may take (connecting has its own bound,
/// `--connect-timeout`). A daemon that answers none of them in this time is taken as gone.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The daemon `circuit top` asks, and its connection while it works.
#[derive(Debug)]
pub struct Source {
    ctx: Ctx,
    /// Also list exited workers (`--all`).
    all: bool,
    /// The connection, once made; dropped after a failure so the next refresh makes it again.
    client: Option<Client>,
}

impl Source {
    /// Asks the daemon `ctx` names; `all` lists exited workers too.
    pub fn new(ctx: Ctx, all: bool) -> Self {
        Self {
            ctx,
            all,
            client: None,
        }
    }

    /// One refresh: everything `circuit top` shows, or why it could not be had.
    pub async fn sample(&mut self) -> anyhow::Result<Sample> {
        let result = self.ask().await;
        if result.is_err() {
            self.client = None;
        }
        result
    }

    async fn ask(&mut self) -> anyhow::Result<Sample> {
        let client = match &self.client {
            Some(client) if !client.is_closed() => client.clone(),
            _ => {
                let client = self.ctx.connect().await?;
                self.client = Some(client.clone());
                client
            }
        };
        let all = self.all;
        let asks = async {
            tokio::join!(
                client.call(Request::Nodes),
                client.call(Request::ClusterList { all }),
                client.chan_list(),
            )
        };
        let Ok((nodes, workers, chans)) = tokio::time::timeout(ANSWER_WITHIN, asks).await else {
            return Err(CliError::hinted(
                format!(
                    "circuitd at {} did not answer within {}",
                    client.node(),
                    humantime::format_duration(ANSWER_WITHIN)
                ),
                "is it overloaded? see its log",
            ));
        };
        Ok(Sample {
            nodes: expect_nodes(nodes?)?,
            workers: expect_workers(workers?)?,
            chans: chans?,
        })
    }
}
