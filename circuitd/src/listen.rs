//! Binding the daemon's listeners before `run`: the Unix socket (0600; its directory created
//! 0700; a stale socket replaced, a live one refused), the optional mesh port (TCP for the
//! API and peer links, UDP for gossip, on one address) and the optional HTTP listener
//! (`/metrics` and the dashboard).

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

/// Why a listener could not be bound, in one line for a person.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BindError(pub String);

/// The mesh port when `--listen` names none.
pub const DEFAULT_PORT: u16 = 7711;

/// The HTTP port when `--http` names none.
pub const DEFAULT_HTTP_PORT: u16 = 9711;

/// Listeners bound and ready to serve.
pub struct Listeners {
    /// The Unix socket.
    pub unix: UnixListener,
    /// Its path, removed at shutdown.
    pub unix_path: PathBuf,
    /// The TCP listener (API and peer links), if any.
    pub tcp: Option<TcpListener>,
    /// The UDP socket for gossip, on the same address and port as `tcp`.
    pub udp: Option<std::net::UdpSocket>,
    /// The HTTP listener (`/metrics`, the dashboard), if any.
    pub http: Option<TcpListener>,
}

impl Listeners {
    /// Binds the socket at `socket` and, if given, the mesh port at `listen` (TCP and UDP on
    /// one address; port 7711 when it names none) and the HTTP listener at `http` (port 9711
    /// when it names none). Without a cluster key (`keyed`), only loopback. The Unix socket
    /// is bound last, so a refused address leaves no socket file behind.
    pub async fn bind(
        socket: &Path,
        listen: Option<&str>,
        http: Option<&str>,
        keyed: bool,
    ) -> Result<Self, BindError> {
        let (tcp, udp) = match listen {
            Some(addr) => {
                let tcp = bind_tcp(addr, keyed).await?;
                let at = tcp
                    .local_addr()
                    .map_err(|e| BindError(format!("cannot read the listen address: {e}")))?;
                let udp = std::net::UdpSocket::bind(at)
                    .map_err(|e| BindError(format!("cannot bind UDP {at} for gossip: {e}")))?;
                (Some(tcp), Some(udp))
            }
            None => (None, None),
        };
        let http = match http {
            Some(addr) => Some(bind_http(addr, keyed).await?),
            None => None,
        };
        Ok(Self {
            unix: bind_unix(socket)?,
            unix_path: socket.to_path_buf(),
            tcp,
            udp,
            http,
        })
    }
}

/// Resolves a listen address (with its port) to at least one address.
pub fn resolve_listen(addr: &str) -> Result<Vec<SocketAddr>, BindError> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| BindError(format!("cannot resolve listen address {addr}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(BindError(format!(
            "listen address {addr} resolves to nothing"
        )));
    }
    Ok(addrs)
}

/// Without a cluster key only loopback addresses may be served; says why in one line.
pub fn check_loopback(addr: &str, addrs: &[SocketAddr]) -> Result<(), BindError> {
    if addrs.iter().all(|a| a.ip().is_loopback()) {
        return Ok(());
    }
    Err(BindError(format!(
        "refusing to listen on {addr} without a cluster key: anyone who can reach it could run \
         processes here; create a key with `circuit keygen KEYFILE` and start circuitd with \
         --key-file KEYFILE (or CIRCUIT_KEY_FILE), or listen on a loopback address"
    )))
}

/// Without a cluster key the HTTP listener serves loopback only; says why in one line.
pub fn check_http_loopback(addr: &str, addrs: &[SocketAddr]) -> Result<(), BindError> {
    if addrs.iter().all(|a| a.ip().is_loopback()) {
        return Ok(());
    }
    Err(BindError(format!(
        "refusing to serve HTTP on {addr} without a cluster key: the metrics and the \
         dashboard show every node, worker and channel of the mesh to anyone who can reach \
         it; serve it on a loopback address such as 127.0.0.1:{DEFAULT_HTTP_PORT}, or start \
         circuitd with --key-file KEYFILE for a mesh meant to be reached from other hosts"
    )))
}

/// Binds the HTTP listener at `host[:port]` (port 9711 when it names none), refusing any
/// address that is not loopback without a cluster key (`keyed`).
pub async fn bind_http(addr: &str, keyed: bool) -> Result<TcpListener, BindError> {
    let addr = with_port(addr, DEFAULT_HTTP_PORT);
    let addrs = resolve_listen(&addr)?;
    if !keyed {
        check_http_loopback(&addr, &addrs)?;
    }
    TcpListener::bind(&addrs[..]).await.map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::AddrInUse {
            "the address is already in use (another circuitd, or another program, serves it)"
                .to_string()
        } else {
            e.to_string()
        };
        BindError(format!("cannot serve HTTP on {addr}: {why}"))
    })
}

/// `host:port`, or `host` with the default port.
pub fn with_default_port(addr: &str) -> String {
    with_port(addr, DEFAULT_PORT)
}

/// `host:port`, or `host` with `port`.
pub fn with_port(addr: &str, port: u16) -> String {
    let has_port = match addr.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>().is_ok() && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    };
    if has_port {
        addr.to_string()
    } else if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

/// Resolves `host[:port]` addresses (port 7711 when absent) for joining, one address each,
/// warning about those that do not resolve.
pub fn resolve_all(addrs: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for addr in addrs {
        let full = with_default_port(addr);
        match full.to_socket_addrs() {
            Ok(found) => out.extend(found.take(1)),
            Err(e) => tracing::warn!(addr = %full, error = %e, "cannot resolve a join address"),
        }
    }
    out
}

/// Binds the Unix socket, replacing a stale one.
pub fn bind_unix(path: &Path) -> Result<UnixListener, BindError> {
    let fail = |why: String| BindError(format!("cannot serve {}: {why}", path.display()));
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

/// Binds TCP, refusing any address that is not loopback without a cluster key (`keyed`):
/// anyone who could reach the port could run processes here.
pub async fn bind_tcp(addr: &str, keyed: bool) -> Result<TcpListener, BindError> {
    let addr = with_default_port(addr);
    let addrs = resolve_listen(&addr)?;
    if !keyed {
        check_loopback(&addr, &addrs)?;
    }
    TcpListener::bind(&addrs[..])
        .await
        .map_err(|e| BindError(format!("cannot listen on {addr}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesh_port_defaults_to_7711() {
        assert_eq!(with_default_port("10.0.0.1"), "10.0.0.1:7711");
        assert_eq!(with_default_port("10.0.0.1:9"), "10.0.0.1:9");
        assert_eq!(with_default_port("localhost"), "localhost:7711");
        assert_eq!(with_default_port("::1"), "[::1]:7711");
        assert_eq!(with_default_port("[::1]:80"), "[::1]:80");
        assert_eq!(with_port("localhost", DEFAULT_HTTP_PORT), "localhost:9711");
    }

    #[test]
    fn http_beyond_loopback_needs_a_key() {
        let lo: SocketAddr = "127.0.0.1:9711".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:9711".parse().expect("addr");
        assert!(check_http_loopback("127.0.0.1:9711", &[lo]).is_ok());
        let refused = check_http_loopback("0.0.0.0:9711", &[lo, any]).expect_err("refused");
        assert!(
            refused
                .to_string()
                .starts_with("refusing to serve HTTP on 0.0.0.0:9711 without a cluster key:"),
            "{refused}"
        );
    }
}
