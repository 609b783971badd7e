//! What this process's stdout is, and whether what was written to it was taken: a terminal or
//! a file takes a line when it is written; a pipe holds it until its reader reads it, and may
//! lose its reader first (`| head -1`). `circuit recv` uses this so that a value leaves its
//! channel only once the reader has it, and so that it stops as soon as the reader is gone.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::FileType;

/// What stdout is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A pipe or FIFO: what is written waits in the pipe until the reader reads it.
    Pipe,
    /// A socket: what is written may wait in buffers we cannot see.
    Socket,
    /// Anything else (a terminal, a file, `/dev/null`): written is taken.
    Final,
}

/// Stdout, as a place values are written to one at a time.
#[derive(Debug)]
pub struct Stdout {
    kind: Kind,
}

/// What became of a value written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The reader has it (for a pipe: the pipe is empty again).
    Taken,
    /// The reader went away before taking it.
    ReaderGone,
}

impl Stdout {
    /// Looks at fd 1.
    pub fn detect() -> Self {
        let kind = match rustix::fs::fstat(io::stdout().as_fd()) {
            Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                FileType::Fifo => Kind::Pipe,
                FileType::Socket => Kind::Socket,
                _ => Kind::Final,
            },
            Err(_) => Kind::Final,
        };
        Self { kind }
    }

    /// True when a written value may still be unread, so a reader that goes away can lose
    /// it: hold one value at a time then.
    pub fn holds_values(&self) -> bool {
        self.kind != Kind::Final
    }

    /// Writes `bytes` and waits until the reader has taken them: at once for a terminal or a
    /// file; for a pipe, until the pipe is empty again (the reader read it all), or its reader
    /// is gone with the value still in the pipe (not taken). A socket counts a written value
    /// as taken: what waits in its buffers cannot be seen from here.
    pub async fn write_taken(&self, bytes: &[u8]) -> io::Result<Fate> {
        if self.holds_values() && reader_gone() {
            return Ok(Fate::ReaderGone);
        }
        {
            let mut out = io::stdout().lock();
            match out.write_all(bytes).and_then(|()| out.flush()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(Fate::ReaderGone),
                Err(e) => return Err(e),
            }
        }
        if self.kind != Kind::Pipe {
            return Ok(Fate::Taken);
        }
        let mut backoff = Backoff::default();
        loop {
            // Empty first: a reader that read the value and then exited (`head -1`) took it.
            match rustix::io::ioctl_fionread(io::stdout().as_fd()) {
                Ok(0) => return Ok(Fate::Taken),
                Ok(_) if reader_gone() => return Ok(Fate::ReaderGone),
                Ok(_) => backoff.wait().await,
                // Not a pipe after all: written is all we can know.
                Err(_) => return Ok(Fate::Taken),
            }
        }
    }

    /// Resolves once the reader of a pipe or socket has gone away (never for a terminal or a
    /// file). A thread waits for it in `poll`, so nothing spins while the channel is quiet.
    pub fn hangup(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.holds_values() {
            std::thread::Builder::new()
                .name("stdout-hangup".into())
                .spawn(move || {
                    let out = io::stdout();
                    let mut fds = [PollFd::new(&out, PollFlags::empty())];
                    // With no events asked for, poll returns only on POLLERR or POLLHUP: the
                    // reader is gone.
                    while rustix::event::poll(&mut fds, None).is_err() {}
                    let _ = tx.send(());
                })
                .map(drop)
                .unwrap_or_default();
        } else {
            // Kept open, so the receiver never resolves.
            std::mem::forget(tx);
        }
        rx
    }
}

/// True when stdout is a pipe or socket whose reader has gone away.
fn reader_gone() -> bool {
    let out = io::stdout();
    let mut fds = [PollFd::new(&out, PollFlags::empty())];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(n) if n > 0 => fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP),
        _ => false,
    }
}

/// Waits between looks at a pipe that still holds a value: a few yields first (a reader on
/// another core takes a line within microseconds), then short sleeps of the thread (tokio's
/// timer counts in milliseconds; this is the only thing recv is doing), then timer sleeps
/// growing to 10 ms, so a slow or stopped reader costs next to nothing.
#[derive(Debug, Default)]
struct Backoff {
    tries: u32,
}

impl Backoff {
    async fn wait(&mut self) {
        self.tries += 1;
        match self.tries {
            0..=8 => tokio::task::yield_now().await,
            n @ 9..=14 => {
                std::thread::sleep(Duration::from_micros(25 << (n - 9)));
                tokio::task::yield_now().await;
            }
            n => {
                let millis = 1u64 << (n - 15).min(4);
                tokio::time::sleep(Duration::from_millis(millis.min(10))).await;
            }
        }
    }
}
