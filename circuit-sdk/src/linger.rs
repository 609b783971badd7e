//! The last write of a connection, made when the runtime is going away (its I/O driver no
//! longer runs, so no write can wait on it): straight to the socket, waiting for room with
//! `poll(2)` until a deadline, as `SO_LINGER` waits for a closing socket. This is what lets a
//! program that returns from `main` right after its last `send` keep every value it sent,
//! however much was still queued (docs/CHANNELS.md, rule 2).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, send, MsgFlags};
use tokio::io::AsyncWrite;

/// A write half that can write its last bytes without a runtime.
pub trait Linger: AsyncWrite + Unpin {
    /// Writes all of `bytes`, waiting for room until `deadline`. The default tries once,
    /// without waiting: a transport with no socket of its own cannot do better.
    fn write_last(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        let _ = deadline;
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut at = 0;
        while at < bytes.len() {
            match Pin::new(&mut *self).poll_write(&mut cx, &bytes[at..]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => at += n,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
            }
        }
        match Pin::new(&mut *self).poll_flush(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Linger for tokio::net::unix::OwnedWriteHalf {
    fn write_last(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        write_to_socket(self.as_ref().as_fd(), bytes, deadline)
    }
}

/// Over TCP, written is not enough: a socket closed with bytes unread in its receive queue
/// (answers the daemon sent after the reader stopped) sends a reset, and the reset throws
/// away what the kernel had not sent yet. So the last write ends the sending side and reads
/// (and drops) what comes until the daemon, having read everything, closes its side.
impl Linger for tokio::net::tcp::OwnedWriteHalf {
    fn write_last(&mut self, bytes: &[u8], deadline: Instant) -> io::Result<()> {
        let fd = self.as_ref().as_fd();
        write_to_socket(fd, bytes, deadline)?;
        nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Write)?;
        read_to_end(fd, deadline)
    }
}

/// Writes all of `bytes` to the (non-blocking) socket `fd`, waiting for room until `deadline`.
fn write_to_socket(fd: BorrowedFd<'_>, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let mut at = 0;
    while at < bytes.len() {
        // MSG_NOSIGNAL: a daemon gone is an error here, not a SIGPIPE.
        match send(fd.as_raw_fd(), &bytes[at..], MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => wait_for(fd, PollFlags::POLLOUT, deadline)?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads and drops what arrives on the (non-blocking) socket `fd` until the other end closes,
/// waiting until `deadline`.
fn read_to_end(fd: BorrowedFd<'_>, deadline: Instant) -> io::Result<()> {
    let mut scratch = [0u8; 16 * 1024];
    loop {
        match recv(fd.as_raw_fd(), &mut scratch, MsgFlags::empty()) {
            Ok(0) => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => wait_for(fd, PollFlags::POLLIN, deadline)?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until `fd` is ready for `events`, or fails at `deadline`.
fn wait_for(fd: BorrowedFd<'_>, events: PollFlags, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    let wait = PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
    match poll(&mut [PollFd::new(fd, events)], wait) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Duration;

    /// More than a socket buffers: the last write waits for the reader to make room and
    /// delivers every byte, in order.
    #[test]
    fn the_last_write_waits_for_room_and_delivers_everything() {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
        ours.set_nonblocking(true).expect("non-blocking");
        let bytes: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).expect("read");
            got
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        write_to_socket(ours.as_fd(), &bytes, deadline).expect("written");
        drop(ours);
        assert!(reader.join().expect("reader") == bytes);
    }

    /// Nobody reads: the last write gives up at its deadline instead of waiting forever.
    #[test]
    fn the_last_write_gives_up_at_its_deadline() {
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
        ours.set_nonblocking(true).expect("non-blocking");
        let bytes = vec![7u8; 8 << 20];
        let deadline = Instant::now() + Duration::from_millis(50);
        let error = write_to_socket(ours.as_fd(), &bytes, deadline).expect_err("no room");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    /// The other end is gone: an error, not a SIGPIPE.
    #[test]
    fn the_last_write_to_a_closed_socket_fails() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("pair");
        ours.set_nonblocking(true).expect("non-blocking");
        drop(theirs);
        let deadline = Instant::now() + Duration::from_secs(5);
        let error = write_to_socket(ours.as_fd(), b"x", deadline).expect_err("closed");
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }
}
