//! The stdin pipe of one run of a worker, as the worker's task keeps it: free for a writer to
//! take, taken by one, closed, or never there (a worker spawned without `stdin` reads
//! `/dev/null`). One writer at a time; a closed pipe stays closed until the next run.

use tokio::process::ChildStdin;

use crate::supervisor::SupervisorError;

/// A run's stdin. `P` is the pipe's write end (a parameter so the rules are tested without a
/// process).
#[derive(Debug)]
pub enum Pipe<P = ChildStdin> {
    /// Spawned without `stdin`.
    Unused,
    /// Open, kept here; no writer has it.
    Free(P),
    /// A writer has it.
    Taken,
    /// Closed: an input ended without `keep_open`, or the worker closed its end.
    Closed,
}

/// The write end of a run's stdin, as a writer takes it.
#[derive(Debug)]
pub struct Taken<P = ChildStdin> {
    /// The pipe.
    pub pipe: P,
    /// The run's process (its pid): a release from another run is not this one's.
    pub pid: u32,
}

impl<P> Pipe<P> {
    /// Hands the pipe of run `pid` of worker `worker` to a writer, if it is free.
    pub fn take(&mut self, worker: &str, pid: u32) -> Result<Taken<P>, SupervisorError> {
        match self {
            Pipe::Free(_) => match std::mem::replace(self, Pipe::Taken) {
                Pipe::Free(pipe) => Ok(Taken { pipe, pid }),
                _ => unreachable!("matched as free above"),
            },
            Pipe::Unused => Err(not_spawned_with_stdin(worker)),
            Pipe::Taken => Err(SupervisorError::InvalidState(format!(
                "worker \"{worker}\"'s stdin is attached elsewhere (one writer at a time)"
            ))),
            Pipe::Closed => Err(SupervisorError::Closed(format!(
                "worker \"{worker}\"'s stdin is closed; a restart gives it a new one"
            ))),
        }
    }

    /// The writer is done with the pipe: `Some` gives it back open, `None` says it is closed.
    pub fn release(&mut self, pipe: Option<P>) {
        if matches!(self, Pipe::Taken) {
            *self = pipe.map_or(Pipe::Closed, Pipe::Free);
        }
    }
}

/// The refusal of an attach to a worker that reads `/dev/null`.
pub fn not_spawned_with_stdin(worker: &str) -> SupervisorError {
    SupervisorError::InvalidState(format!("worker \"{worker}\" was not spawned with --stdin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_at_a_time_and_the_pipe_comes_back_open() {
        let mut pipe = Pipe::Free("fd");
        let taken = pipe.take("w", 7).expect("free");
        assert_eq!((taken.pipe, taken.pid), ("fd", 7));
        let second = pipe.take("w", 7).unwrap_err();
        assert_eq!(
            second.to_string(),
            "worker \"w\"'s stdin is attached elsewhere (one writer at a time)"
        );
        pipe.release(Some("fd"));
        assert!(pipe.take("w", 7).is_ok(), "free again after a release");
    }

    #[test]
    fn a_closed_pipe_stays_closed_for_the_run() {
        let mut pipe = Pipe::Free(());
        pipe.take("w", 1).expect("free");
        pipe.release(None);
        let err = pipe.take("w", 1).unwrap_err();
        assert!(err.to_string().contains("is closed"), "{err}");
        // A late release (a writer that ended after another's close) changes nothing.
        pipe.release(Some(()));
        assert!(matches!(pipe, Pipe::Closed));
    }

    #[test]
    fn a_worker_without_stdin_says_so() {
        let mut pipe: Pipe<()> = Pipe::Unused;
        assert_eq!(
            pipe.take("w", 1).unwrap_err().to_string(),
            "worker \"w\" was not spawned with --stdin"
        );
    }
}
