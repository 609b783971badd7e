//! The TCP transport: a preamble, then (with a cluster key) a Noise `NNpsk0` handshake keyed by
//! the key, then every byte in authenticated, encrypted records.
//!
//! ```text
//! client → server   "CIRCUIT" 0x01 MODE          MODE 0: plain, 1: Noise_NNpsk0_25519_AESGCM_BLAKE2s
//! client → server   u16 len | handshake msg 1    (MODE 1 only)
//! server → client   STATUS                        0 ok, else refused (see `Status`) and closed
//! server → client   u16 len | handshake msg 2    (MODE 1 and STATUS 0 only)
//! then, both ways   u16 len | ciphertext         records of at most 65535 bytes (MODE 1)
//!                   frames as they are           (MODE 0)
//! ```
//!
//! The preamble is the Noise prologue, so a changed mode fails the handshake. The responder
//! tries each key it holds on message 1 (its payload is authenticated with the key), so a
//! daemon in the middle of a rotation accepts both keys. Records use the transport nonce as a
//! counter: a record replayed, dropped or reordered fails to decrypt and ends the connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use snow::StatelessTransportState;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::keys::{Key, Keyring};
use crate::linger::Linger;

const MAGIC: &[u8; 7] = b"CIRCUIT";
const PREAMBLE_VERSION: u8 = 1;
const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_AESGCM_BLAKE2s";
const TAG: usize = 16;
/// The largest Noise message.
const MAX_RECORD: usize = 65535;
/// The most plaintext one record carries.
const MAX_PLAIN: usize = MAX_RECORD - TAG;
/// Ciphertext the writer holds before it pushes back.
const WRITE_HIGH_WATER: usize = 512 * 1024;

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// No key on either side: frames as they are (loopback development mode).
    Plain = 0,
    /// Noise NNpsk0 with the cluster key.
    Noise = 1,
}

/// The server's answer to the preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Go on.
    Ok = 0,
    /// The handshake did not verify with any key the server holds.
    AuthFailed = 1,
    /// The server holds a key and the client offered none.
    KeyRequired = 2,
    /// The client offered a key to a server that holds none.
    NoKey = 3,
    /// The server is at its connection or handshake limit.
    Busy = 4,
}

impl Status {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::AuthFailed,
            2 => Self::KeyRequired,
            3 => Self::NoKey,
            4 => Self::Busy,
            _ => return None,
        })
    }
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer did not send a circuit preamble (another protocol, or garbage).
    #[error("not a circuit connection (bad preamble)")]
    BadPreamble,
    /// The handshake failed: the peers hold no key in common.
    #[error("authentication failed: wrong or missing cluster key")]
    AuthFailed,
    /// The server holds a key; the client none.
    #[error("authentication failed: wrong or missing cluster key (the daemon requires the cluster key; pass --key-file or set CIRCUIT_KEY_FILE)")]
    KeyRequired,
    /// The client holds a key; the server none.
    #[error(
        "the daemon runs without a cluster key (loopback development mode); connect without one"
    )]
    NoKey,
    /// The server is at a limit.
    #[error("the daemon is at its connection limit; try again later")]
    Busy,
    /// Bytes that do not follow the protocol.
    #[error("handshake protocol error: {0}")]
    Protocol(String),
    /// The transport failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<snow::Error> for HandshakeError {
    fn from(e: snow::Error) -> Self {
        Self::Protocol(e.to_string())
    }
}

fn preamble(mode: Mode) -> [u8; 9] {
    let mut p = [0; 9];
    p[..7].copy_from_slice(MAGIC);
    p[7] = PREAMBLE_VERSION;
    p[8] = mode as u8;
    p
}

fn params() -> snow::params::NoiseParams {
    NOISE_PARAMS.parse().expect("a valid Noise pattern name")
}

/// An established session: the two directions' cipher states.
#[derive(Clone)]
pub struct Session {
    state: Arc<StatelessTransportState>,
    fingerprint: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session(key {})", self.fingerprint)
    }
}

impl Session {
    /// The fingerprint of the key the session was made with.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Wraps the two halves of the connection.
    pub fn wrap<R, W>(self, read: R, write: W) -> (SecureRead<R>, SecureWrite<W>) {
        (
            SecureRead {
                inner: read,
                state: self.state.clone(),
                nonce: 0,
                raw: Vec::new(),
                raw_start: 0,
                raw_end: 0,
                plain: Vec::new(),
                plain_at: 0,
                plain_end: 0,
                failed: false,
            },
            SecureWrite {
                inner: write,
                state: self.state,
                nonce: 0,
                out: Vec::with_capacity(2 + MAX_RECORD),
                out_at: 0,
            },
        )
    }
}

async fn read_message<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<Vec<u8>> {
    let mut len = [0; 2];
    s.read_exact(&mut len).await?;
    let mut msg = vec![0; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut msg).await?;
    Ok(msg)
}

/// The client side: the preamble, then the handshake with `key` (plain without one).
pub async fn connect<S>(
    stream: &mut S,
    key: Option<&Key>,
) -> Result<Option<Session>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mode = if key.is_some() {
        Mode::Noise
    } else {
        Mode::Plain
    };
    let pre = preamble(mode);
    let mut hs = match key {
        Some(key) => {
            let mut hs = snow::Builder::new(params())
                .prologue(&pre)?
                .psk(0, key.psk())?
                .build_initiator()?;
            let mut msg = [0; 128];
            let n = hs.write_message(&[], &mut msg)?;
            let mut first = pre.to_vec();
            first.extend_from_slice(&(n as u16).to_be_bytes());
            first.extend_from_slice(&msg[..n]);
            stream.write_all(&first).await?;
            Some(hs)
        }
        None => {
            stream.write_all(&pre).await?;
            None
        }
    };
    stream.flush().await?;
    let mut status = [0; 1];
    match stream.read_exact(&mut status).await {
        Ok(_) => {}
        // A daemon that closes before answering has refused the preamble (an older daemon).
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(HandshakeError::Protocol(
                "the daemon closed the connection during the handshake (is it an older circuitd?)"
                    .into(),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    match Status::from_u8(status[0]) {
        Some(Status::Ok) => {}
        Some(Status::AuthFailed) => return Err(HandshakeError::AuthFailed),
        Some(Status::KeyRequired) => return Err(HandshakeError::KeyRequired),
        Some(Status::NoKey) => return Err(HandshakeError::NoKey),
        Some(Status::Busy) => return Err(HandshakeError::Busy),
        None => return Err(HandshakeError::BadPreamble),
    }
    let (Some(mut hs), Some(key)) = (hs.take(), key) else {
        return Ok(None);
    };
    let msg = read_message(stream).await?;
    let mut payload = [0; 128];
    hs.read_message(&msg, &mut payload)
        .map_err(|_| HandshakeError::AuthFailed)?;
    Ok(Some(Session {
        state: Arc::new(hs.into_stateless_transport_mode()?),
        fingerprint: key.fingerprint().to_string(),
    }))
}

/// What the server side of a handshake learnt.
#[derive(Debug)]
pub enum Accepted {
    /// A plain connection (the server holds no key).
    Plain,
    /// An encrypted session.
    Secure(Session),
}

/// Reads the client's preamble and mode; the caller answers with [`accept`] or [`refuse`].
pub async fn read_preamble<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Mode, HandshakeError> {
    let mut pre = [0; 9];
    stream.read_exact(&mut pre).await?;
    if &pre[..7] != MAGIC || pre[7] != PREAMBLE_VERSION {
        return Err(HandshakeError::BadPreamble);
    }
    match pre[8] {
        0 => Ok(Mode::Plain),
        1 => Ok(Mode::Noise),
        _ => Err(HandshakeError::BadPreamble),
    }
}

/// Answers a refused connection with `status` (best effort) and ends it.
pub async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, status: Status) {
    let _ = stream.write_all(&[status as u8]).await;
    let _ = stream.shutdown().await;
}

/// The server side, after [`read_preamble`] gave `mode`: runs the handshake with whichever key
/// of `keys` the client used. Refusals are answered (so the client can say why) and returned.
pub async fn accept<S>(
    stream: &mut S,
    mode: Mode,
    keys: Option<&Keyring>,
) -> Result<Accepted, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let keys = match (mode, keys) {
        (Mode::Plain, None) => {
            stream.write_all(&[Status::Ok as u8]).await?;
            return Ok(Accepted::Plain);
        }
        (Mode::Plain, Some(_)) => {
            refuse(stream, Status::KeyRequired).await;
            return Err(HandshakeError::KeyRequired);
        }
        (Mode::Noise, None) => {
            // Read message 1 so the close is clean and the client reads the status.
            let _ = read_message(stream).await;
            refuse(stream, Status::NoKey).await;
            return Err(HandshakeError::NoKey);
        }
        (Mode::Noise, Some(keys)) => keys.keys(),
    };
    let first = read_message(stream).await?;
    let pre = preamble(Mode::Noise);
    let mut payload = [0; 128];
    for key in keys.iter() {
        let mut hs = snow::Builder::new(params())
            .prologue(&pre)?
            .psk(0, key.psk())?
            .build_responder()?;
        if hs.read_message(&first, &mut payload).is_err() {
            continue;
        }
        let mut msg = [0; 128];
        let n = hs.write_message(&[], &mut msg)?;
        let mut reply = vec![Status::Ok as u8];
        reply.extend_from_slice(&(n as u16).to_be_bytes());
        reply.extend_from_slice(&msg[..n]);
        stream.write_all(&reply).await?;
        stream.flush().await?;
        return Ok(Accepted::Secure(Session {
            state: Arc::new(hs.into_stateless_transport_mode()?),
            fingerprint: key.fingerprint().to_string(),
        }));
    }
    refuse(stream, Status::AuthFailed).await;
    Err(HandshakeError::AuthFailed)
}

/// The read half of an encrypted connection.
pub struct SecureRead<R> {
    inner: R,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    /// Ciphertext read but not yet decrypted.
    /// (`raw[raw_start..raw_end]`; sized once, at the first read, to two whole records).
    raw: Vec<u8>,
    raw_start: usize,
    raw_end: usize,
    /// The last record opened, `plain[plain_at..plain_end]` not yet read.
    plain: Vec<u8>,
    plain_at: usize,
    plain_end: usize,
    failed: bool,
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

impl<R: AsyncRead + Unpin> SecureRead<R> {
    /// Decrypts the first whole record in `raw`, if there is one.
    fn open_record(&mut self) -> io::Result<bool> {
        let avail = &self.raw[self.raw_start..self.raw_end];
        if avail.len() < 2 {
            return Ok(false);
        }
        let len = u16::from_be_bytes([avail[0], avail[1]]) as usize;
        if len < TAG {
            return Err(invalid("encrypted record shorter than its tag"));
        }
        if avail.len() < 2 + len {
            return Ok(false);
        }
        let n = len - TAG;
        if self.plain.len() < MAX_PLAIN {
            self.plain.resize(MAX_PLAIN, 0);
        }
        self.state
            .read_message(self.nonce, &avail[2..2 + len], &mut self.plain[..n])
            .map_err(|_| {
                invalid("a record failed authentication (tampered, replayed or reordered)")
            })?;
        self.nonce += 1;
        self.plain_at = 0;
        self.plain_end = n;
        self.raw_start += 2 + len;
        Ok(true)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for SecureRead<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.failed {
                return Poll::Ready(Err(invalid("the connection failed authentication")));
            }
            if this.plain_at < this.plain_end {
                let n = buf.remaining().min(this.plain_end - this.plain_at);
                buf.put_slice(&this.plain[this.plain_at..this.plain_at + n]);
                this.plain_at += n;
                return Poll::Ready(Ok(()));
            }
            match this.open_record() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    this.failed = true;
                    return Poll::Ready(Err(e));
                }
            }
            // What is left is the start of one record: move it to the front, then read more.
            if this.raw.len() < 2 * (2 + MAX_RECORD) {
                this.raw.resize(2 * (2 + MAX_RECORD), 0);
            }
            if this.raw_start > 0 {
                this.raw.copy_within(this.raw_start..this.raw_end, 0);
                this.raw_end -= this.raw_start;
                this.raw_start = 0;
            }
            let mut rb = ReadBuf::new(&mut this.raw[this.raw_end..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let got = rb.filled().len();
            this.raw_end += got;
            if got == 0 {
                if this.raw_end == 0 {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended inside an encrypted record",
                )));
            }
        }
    }
}

/// The write half of an encrypted connection.
pub struct SecureWrite<W> {
    inner: W,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    /// Records sealed but not yet written.
    out: Vec<u8>,
    out_at: usize,
}

impl<W: AsyncWrite + Unpin> SecureWrite<W> {
    /// Writes sealed records until done or the transport would block.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        self.out.clear();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl<W> SecureWrite<W> {
    /// Seals `plain` (at most `MAX_PLAIN` bytes) as one record after those not yet written.
    fn seal(&mut self, plain: &[u8]) -> io::Result<()> {
        let start = self.out.len();
        self.out.resize(start + 2 + plain.len() + TAG, 0);
        self.out[start..start + 2].copy_from_slice(&((plain.len() + TAG) as u16).to_be_bytes());
        self.state
            .write_message(self.nonce, plain, &mut self.out[start + 2..])
            .map_err(|e| io::Error::other(format!("cannot encrypt: {e}")))?;
        self.nonce += 1;
        Ok(())
    }
}

/// The last write seals what is left and writes every record not yet written through the
/// transport's own last write.
impl<W: Linger> Linger for SecureWrite<W> {
    fn write_last(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        for plain in bytes.chunks(MAX_PLAIN) {
            self.seal(plain)?;
        }
        let out = std::mem::take(&mut self.out);
        let at = std::mem::take(&mut self.out_at);
        self.inner.write_last(&out[at..], deadline)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for SecureWrite<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        if this.out.len() - this.out_at >= WRITE_HIGH_WATER {
            // poll_drain registered the waker with the transport.
            return Poll::Pending;
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(MAX_PLAIN);
        this.seal(&buf[..n])?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(
        client_key: Option<Key>,
        server_keys: Option<Keyring>,
    ) -> (
        Result<Option<Session>, HandshakeError>,
        Result<Accepted, HandshakeError>,
        tokio::io::DuplexStream,
        tokio::io::DuplexStream,
    ) {
        let (mut c, mut s) = tokio::io::duplex(1 << 20);
        let server = async {
            let mode = read_preamble(&mut s).await?;
            accept(&mut s, mode, server_keys.as_ref()).await
        };
        let (client, server) = tokio::join!(connect(&mut c, client_key.as_ref()), server);
        (client, server, c, s)
    }

    #[tokio::test]
    async fn records_carry_bytes_both_ways_in_order() {
        let key = Key::generate().expect("r");
        let ring = Keyring::new(vec![Key::generate().expect("r"), key.clone()]).expect("ring");
        let (client, server, c, s) = pair(Some(key), Some(ring)).await;
        let client = client.expect("client").expect("secure");
        let Accepted::Secure(server) = server.expect("server") else {
            panic!("plain")
        };
        assert_eq!(client.fingerprint(), server.fingerprint());
        let (cr, cw) = tokio::io::split(c);
        let (sr, sw) = tokio::io::split(s);
        let (_cr, mut cw) = client.wrap(cr, cw);
        let (mut sr, _sw) = server.wrap(sr, sw);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let send = data.clone();
        let writer = tokio::spawn(async move {
            for chunk in send.chunks(70_001) {
                cw.write_all(chunk).await.expect("write");
            }
            cw.shutdown().await.expect("shutdown");
        });
        let mut got = Vec::new();
        sr.read_to_end(&mut got).await.expect("read");
        writer.await.expect("writer");
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn refusals_say_why() {
        let a = Key::generate().expect("r");
        let b = Keyring::new(vec![Key::generate().expect("r")]).expect("ring");
        let (client, server, ..) = pair(Some(a.clone()), Some(b.clone())).await;
        assert!(
            matches!(client, Err(HandshakeError::AuthFailed)),
            "{client:?}"
        );
        assert!(matches!(server, Err(HandshakeError::AuthFailed)));
        let msg = HandshakeError::AuthFailed.to_string();
        assert!(msg.starts_with("authentication failed: wrong or missing cluster key"));
        let (client, ..) = pair(None, Some(b)).await;
        assert!(
            matches!(client, Err(HandshakeError::KeyRequired)),
            "{client:?}"
        );
        let (client, ..) = pair(Some(a), None).await;
        assert!(matches!(client, Err(HandshakeError::NoKey)), "{client:?}");
        let (client, server, ..) = pair(None, None).await;
        assert!(matches!(client, Ok(None)));
        assert!(matches!(server, Ok(Accepted::Plain)));
    }

    #[tokio::test]
    async fn a_replayed_or_tampered_record_is_rejected() {
        let key = Key::generate().expect("r");
        let ring = Keyring::new(vec![key.clone()]).expect("ring");
        let (client, server, c, s) = pair(Some(key), Some(ring)).await;
        let (client, Ok(Accepted::Secure(server))) = (client.expect("c").expect("s"), server)
        else {
            panic!("handshake")
        };
        // Capture what the client sends: two records.
        let (mut tap, tap_far) = tokio::io::duplex(1 << 16);
        let (_cr, mut cw) = client.wrap(tokio::io::empty(), tap_far);
        cw.write_all(b"first").await.expect("w");
        cw.flush().await.expect("f");
        cw.write_all(b"second").await.expect("w");
        cw.flush().await.expect("f");
        drop(cw);
        let mut wire = Vec::new();
        tap.read_to_end(&mut wire).await.expect("tap");
        drop((c, s));
        let first_len = 2 + u16::from_be_bytes([wire[0], wire[1]]) as usize;
        for (name, bytes) in [
            (
                "replayed record",
                [&wire[..first_len], &wire[..first_len]].concat(),
            ),
            (
                "reordered records",
                [&wire[first_len..], &wire[..first_len]].concat(),
            ),
            ("flipped bit", {
                let mut w = wire.clone();
                w[5] ^= 1;
                w
            }),
        ] {
            let (mut feed, far) = tokio::io::duplex(1 << 16);
            feed.write_all(&bytes).await.expect("feed");
            drop(feed);
            let (mut sr, _) = server.clone().wrap(far, tokio::io::sink());
            let mut got = Vec::new();
            let err = sr.read_to_end(&mut got).await;
            assert!(err.is_err(), "{name}: accepted {got:?}");
            let want: &[u8] = if name == "replayed record" {
                b"first"
            } else {
                b""
            };
            assert_eq!(got, want, "{name}");
        }
    }
}
