//! Daemon configuration: every knob with its default. `Config::default()` is a working
//! single-node daemon.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The mesh address other nodes use for this one (default: the listen address).
    pub advertise: Option<SocketAddr>,
    /// Mesh addresses to join through at start, retried until one answers.
    pub join: Vec<String>,
    /// This node's labels, for placement.
    pub labels: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: default_name(),
            data_dir: default_data_dir(),
            socket: circuit_sdk::paths::socket_path(),
            listen: None,
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 5,
            max_frame: circuit_sdk::proto::DEFAULT_MAX_FRAME,
            max_payload: circuit_sdk::proto::DEFAULT_MAX_PAYLOAD,
            max_requests_per_connection: 1024,
            handshake_timeout: Duration::from_secs(10),
            advertise: None,
            join: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
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
