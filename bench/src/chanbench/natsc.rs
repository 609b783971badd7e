//! The servers of the NATS contenders whose roles are C programs ([`super::cprog`]): a
//! `nats-server` of their own for NATS core, and one with JetStream enabled whose trials each get
//! a work-queue stream and a durable pull consumer, made and removed by the harness through
//! async-nats ([`jetstream::create`]) before and after the C roles run.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::stream::StorageType;
use futures::future::LocalBoxFuture;

use super::jetstream::{self, StreamSpec};
use super::nats::NatsServer;
use super::server::Server;
use super::{cprog, Scenario, System};

/// How long a delivered message may go unacked before the consumer delivers it again:
/// JetStream's default (nothing fails in these trials).
const ACK_WAIT: Duration = Duration::from_secs(30);

/// `nats-server` for the C client's NATS core roles (`bench-c-nats`).
#[derive(Debug)]
pub struct NatsCServer {
    server: NatsServer,
    /// The C client library's version.
    client: String,
}

impl NatsCServer {
    /// Starts `binary` and checks that the C roles' program runs.
    pub fn start(binary: &Path, ready_within: Duration) -> anyhow::Result<Self> {
        let client = cprog::version(program(System::NatsC))?;
        let server = NatsServer::start(binary, ready_within)?;
        Ok(Self { server, client })
    }
}

impl Server for NatsCServer {
    fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    fn describe(&self) -> String {
        format!(
            "nats-server {}; C clients ({}): publish to a queue group with asynchronous \
             subscribers, request/reply with the replier sending at once (`SendAsap`)",
            self.server.version(),
            self.client
        )
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        self.server.check_alive()
    }
}

/// `nats-server` with JetStream for the C client's JetStream roles (`bench-c-jetstream`), and the
/// harness's client to it, which makes and removes each trial's stream.
#[derive(Debug)]
pub struct JetStreamCServer {
    /// Declared before the server: disconnects before the server is stopped.
    js: async_nats::jetstream::Context,
    server: NatsServer,
    client: String,
}

impl JetStreamCServer {
    /// Starts `binary` with JetStream, connects to it, and checks that the C roles' program runs.
    pub async fn start(binary: &Path, ready_within: Duration) -> anyhow::Result<Self> {
        let client = cprog::version(program(System::JetStreamC))?;
        let server = NatsServer::start_jetstream(binary, ready_within)?;
        let nc = async_nats::connect(server.endpoint())
            .await
            .context("cannot connect to nats-server")?;
        Ok(Self {
            js: async_nats::jetstream::new(nc),
            server,
            client,
        })
    }
}

impl Server for JetStreamCServer {
    fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    fn describe(&self) -> String {
        format!(
            "nats-server {} with JetStream; C clients ({}): a work-queue stream in memory, \
             asynchronous publishes with up to {} acks outstanding, a durable pull consumer \
             fetching {} at a time with explicit acks",
            self.server.version(),
            self.client,
            super::trial::DEFAULT_WINDOW,
            jetstream::PULL_BATCH,
        )
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        self.server.check_alive()
    }

    /// The trial's stream (`name`, its one subject too) and its consumer, which lets at most
    /// `capacity` messages go unacked: the counterpart of circuit's channel capacity.
    fn open<'a>(
        &'a self,
        name: &'a str,
        _scenario: Scenario,
        capacity: u64,
    ) -> LocalBoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let spec = StreamSpec {
                replicas: 1,
                storage: StorageType::Memory,
                ack_wait: ACK_WAIT,
                max_ack_pending: i64::try_from(capacity).unwrap_or(i64::MAX),
            };
            jetstream::create(&self.js, name, &spec).await
        })
    }

    fn close<'a>(
        &'a self,
        name: &'a str,
        _scenario: Scenario,
    ) -> LocalBoxFuture<'a, anyhow::Result<()>> {
        Box::pin(jetstream::delete(&self.js, name))
    }
}

fn program(system: System) -> &'static str {
    system
        .c_program()
        .expect("the NATS C contenders have C programs")
}
