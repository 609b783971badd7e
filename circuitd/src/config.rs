//! Daemon configuration: every knob with its default. `Config::default()` is a working
//! single-node daemon.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use circuit_sdk::secure::Keyring;

/// What a daemon needs to know before it starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Node name, unique in the mesh (default: the host name).
    pub name: String,
    /// Where the job table, logs and lock file live.
    pub data_dir: PathBuf,
    /// The Unix socket path, handed to workers as `CIRCUIT_SOCKET`.
    pub socket: PathBuf,
    /// The TCP API address, if any (shown by `status`).
    pub listen: Option<String>,
    /// The HTTP listener's address (`--http`: `/metrics` and the dashboard), if any, as
    /// bound (shown by `status`).
    pub http: Option<String>,
    /// Default size at which a worker's log file rotates.
    pub log_max_bytes: u64,
    /// Default number of rotated log files kept per worker.
    pub log_max_files: u32,
    /// Largest frame accepted from a client; at least `max_payload` plus headers.
    pub max_frame: usize,
    /// Largest channel value, in bytes.
    pub max_payload: u64,
    /// Most requests one connection may have outstanding at once.
    pub max_requests_per_connection: usize,
    /// How long a new connection may take to say hello.
    pub handshake_timeout: Duration,
    /// Most channels this node owns; a create beyond it fails with `limit_reached`. Each one
    /// is an actor task with a queue, and a line in `channels.json`.
    pub max_channels: usize,
    /// Most workers in this node's table, exited and failed ones included (they hold a task, a
    /// job table entry and their logs until `circuit rm`); a spawn beyond it fails with
    /// `limit_reached`.
    pub max_workers: usize,
    /// A connection that has sent nothing for this long, with no request outstanding and no
    /// channel stream open, is closed: it holds a task and buffers for nobody. The SDK sends
    /// a ping after 30 s of silence, so healthy clients stay connected.
    pub idle_timeout: Duration,
    /// How long this daemon's own clients may stay silent before they ping (`None`: never):
    /// its peer links, and its workers, told in `CIRCUIT_KEEPALIVE_MS` when it is not the
    /// SDK's default. Below a third of the mesh's idle timeout (`circuitd` sets a quarter).
    pub keepalive: Option<Duration>,
    /// How long a replica's node may be dead before the leader of its replicated channel
    /// replaces it on another node (`--replica-repair-after`).
    pub replica_repair_after: Duration,
    /// The mesh address other nodes use for this one (default: the listen address).
    pub advertise: Option<SocketAddr>,
    /// Mesh addresses to join through at start, retried until one answers.
    pub join: Vec<String>,
    /// This node's labels, for placement.
    pub labels: BTreeMap<String, String>,
    /// The cluster keys (`--key-file`). Without them the mesh port is loopback only and
    /// unauthenticated (development mode).
    pub keys: Option<Keyring>,
    /// Most connections (Unix socket and TCP together) served at once.
    pub max_connections: usize,
    /// Most TCP connections in their handshake at once; more are refused at once.
    pub max_handshakes: usize,
    /// Where to write the daemon's pid once it holds the data dir lock (`--pidfile`), for
    /// service managers and `circuit install`; removed when the daemon stops.
    pub pidfile: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: default_name(),
            data_dir: default_data_dir(),
            socket: circuit_sdk::paths::socket_path(),
            listen: None,
            http: None,
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 5,
            max_frame: circuit_sdk::proto::DEFAULT_MAX_FRAME,
            max_payload: circuit_sdk::proto::DEFAULT_MAX_PAYLOAD,
            max_requests_per_connection: 1024,
            handshake_timeout: Duration::from_secs(10),
            max_channels: 100_000,
            max_workers: 10_000,
            idle_timeout: Duration::from_secs(120),
            keepalive: Some(circuit_sdk::client::KEEPALIVE_DEFAULT),
            replica_repair_after: Duration::from_secs(30),
            advertise: None,
            join: Vec::new(),
            labels: BTreeMap::new(),
            keys: None,
            max_connections: 1024,
            max_handshakes: 64,
            pidfile: None,
        }
    }
}

/// Allowed `handshake_timeout`s (`--handshake-timeout`): long enough for a slow link, short
/// enough that silent connections cannot hold handshake places for long.
pub const HANDSHAKE_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(300);

/// Allowed `idle_timeout`s (`--idle-timeout`). Below 2 minutes, clients must ping more often
/// than the SDK's default of every 30 s (`CIRCUIT_KEEPALIVE_MS`).
pub const IDLE_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 3600);

/// Allowed `replica_repair_after`s (`--replica-repair-after`).
pub const REPAIR_AFTER_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 3600);

/// Parses a duration flag (`10s`, `2m`, `1500ms`) that must lie within `range`.
pub fn parse_duration_in(s: &str, range: &RangeInclusive<Duration>) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 10s, 2m, 1500ms)"))?;
    if !range.contains(&d) {
        return Err(format!(
            "must be between {} and {}",
            humantime::format_duration(*range.start()),
            humantime::format_duration(*range.end())
        ));
    }
    Ok(d)
}

/// The host name, or `localhost` when it cannot be read.
pub fn default_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `/var/lib/circuit` for root, else `$XDG_DATA_HOME/circuit` or `~/.local/share/circuit`.
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::getuid().is_root() {
        return PathBuf::from("/var/lib/circuit");
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("circuit");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/circuit"),
        None => PathBuf::from(format!("/tmp/circuit-{}/data", nix::unistd::getuid())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_flags_are_checked_against_their_range() {
        let range = IDLE_TIMEOUT_RANGE;
        assert_eq!(
            parse_duration_in("90s", &range),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(parse_duration_in("1s", &range), Ok(Duration::from_secs(1)));
        assert_eq!(
            parse_duration_in("500ms", &range),
            Err("must be between 1s and 1day".to_string())
        );
        assert!(parse_duration_in("soon", &range).is_err_and(|e| e.contains("e.g. 10s")));
    }
}
