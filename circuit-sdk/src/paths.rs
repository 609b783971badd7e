//! Where things live by default, and the environment variables that move them.

use std::path::PathBuf;

/// Overrides the daemon's Unix socket path, for the daemon, the CLI and workers alike.
pub const SOCKET_ENV: &str = "CIRCUIT_SOCKET";
/// Set in every worker's environment: the node the worker runs on.
pub const NODE_ENV: &str = "CIRCUIT_NODE";
/// Set in every worker's environment: the worker's own name.
pub const WORKER_ENV: &str = "CIRCUIT_WORKER";
/// Prefix of channel bindings in a worker's environment (`CIRCUIT_CHAN_IN=jobs`).
pub const CHAN_ENV_PREFIX: &str = "CIRCUIT_CHAN_";

/// The default socket path when `CIRCUIT_SOCKET` is unset: `/run/circuit/circuitd.sock` for root,
/// else `$XDG_RUNTIME_DIR/circuit/circuitd.sock`, else `/tmp/circuit-$UID/circuitd.sock`.
pub fn default_socket_path() -> PathBuf {
    let uid = nix::unistd::getuid();
    if uid.is_root() {
        return PathBuf::from("/run/circuit/circuitd.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("circuit/circuitd.sock"),
        _ => PathBuf::from(format!("/tmp/circuit-{uid}/circuitd.sock")),
    }
}

/// The socket to use: `CIRCUIT_SOCKET` when set, else [`default_socket_path`].
pub fn socket_path() -> PathBuf {
    match std::env::var_os(SOCKET_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default_socket_path(),
    }
}
