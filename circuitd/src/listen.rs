//! Binding the daemon's listeners before `run`: the Unix socket (0600; its directory created
//! 0700; a stale socket replaced, a live one refused) and the optional loopback TCP listener.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

use crate::DaemonError;

/// Listeners bound and ready to serve.
pub struct Listeners {
    /// The Unix socket.
    pub unix: UnixListener,
    /// Its path, removed at shutdown.
    pub unix_path: PathBuf,
    /// The TCP API listener, if any.
    pub tcp: Option<TcpListener>,
}

impl Listeners {
    /// Binds the socket at `socket` and, if given, TCP at `listen` (loopback only).
    pub async fn bind(socket: &Path, listen: Option<&str>) -> Result<Self, DaemonError> {
        let tcp = match listen {
            Some(addr) => Some(bind_tcp(addr).await?),
            None => None,
        };
        Ok(Self {
            unix: bind_unix(socket)?,
            unix_path: socket.to_path_buf(),
            tcp,
        })
    }
}

/// Binds the Unix socket, replacing a stale one.
pub fn bind_unix(path: &Path) -> Result<UnixListener, DaemonError> {
    let fail = |why: String| DaemonError::Bind(format!("cannot serve {}: {why}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::metadata(dir) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                tracing::warn!(dir = %dir.display(), "socket directory is accessible to other users");
            }
            Ok(_) => {}
            Err(_) => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| fail(format!("cannot create its directory: {e}")))?,
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(fail("another circuitd is already serving it".into()));
            }
            std::fs::remove_file(path)
                .map_err(|e| fail(format!("cannot remove the stale socket: {e}")))?;
        }
        Ok(_) => return Err(fail("the path exists and is not a socket".into())),
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail(format!("cannot set its permissions: {e}")))?;
    Ok(listener)
}

/// Binds TCP, refusing any address that is not loopback (no cluster key yet).
pub async fn bind_tcp(addr: &str) -> Result<TcpListener, DaemonError> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| DaemonError::Bind(format!("cannot resolve listen address {addr}: {e}")))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(DaemonError::Bind(format!(
            "refusing to listen on {addr}: without a cluster key circuitd binds loopback addresses only"
        )));
    }
    TcpListener::bind(&addrs[..])
        .await
        .map_err(|e| DaemonError::Bind(format!("cannot listen on {addr}: {e}")))
}
