//! The rules of a stdin stream, sans-IO: chunks arrive numbered from 1, in order, each at most
//! `max_chunk` bytes, at most `window` of them not yet written; `eof` names how many were sent.
//! The queue holds what is not yet written and says which chunk each write finished, so the
//! writer answers it with `accepted`.

use std::collections::VecDeque;

use bytes::Bytes;

/// The chunks of one stdin stream not yet written, and where the input stands.
#[derive(Debug)]
pub(crate) struct Queue {
    window: usize,
    max_chunk: usize,
    /// Received, not yet fully written: (seq, bytes).
    chunks: VecDeque<(u64, Bytes)>,
    /// Bytes of the front chunk already written.
    offset: usize,
    /// The seq the next chunk must have.
    next: u64,
    /// The client said the input ended.
    eof: bool,
}

impl Queue {
    /// An empty queue for a stream with these limits.
    pub fn new(window: u32, max_chunk: usize) -> Self {
        Self {
            window: window as usize,
            max_chunk,
            chunks: VecDeque::new(),
            offset: 0,
            next: 1,
            eof: false,
        }
    }

    /// Takes chunks as the client sent them; an error (for the client: `bad_request`) says
    /// which rule a chunk broke.
    pub fn push(&mut self, values: Vec<(u64, Bytes)>) -> Result<(), String> {
        for (seq, bytes) in values {
            if self.eof {
                return Err(format!("stdin chunk {seq} after the end of the input"));
            }
            if seq != self.next {
                return Err(format!(
                    "stdin chunk {seq} out of order (expected {})",
                    self.next
                ));
            }
            if bytes.len() > self.max_chunk {
                return Err(format!(
                    "stdin chunk {seq} of {} bytes is larger than {} bytes",
                    bytes.len(),
                    self.max_chunk
                ));
            }
            if self.chunks.len() >= self.window {
                return Err(format!(
                    "stdin chunk {seq} is beyond the window of {} chunks not yet accepted",
                    self.window
                ));
            }
            self.chunks.push_back((seq, bytes));
            self.next += 1;
        }
        Ok(())
    }

    /// The client's end of input, after `sent` chunks.
    pub fn eof(&mut self, sent: u64) -> Result<(), String> {
        if self.eof {
            return Err("the end of the input came twice".into());
        }
        let got = self.next - 1;
        if sent != got {
            return Err(format!(
                "the input ended after {sent} stdin chunks, but {got} came"
            ));
        }
        self.eof = true;
        Ok(())
    }

    /// What to write next: the unwritten rest of the oldest chunk (possibly empty), if any.
    pub fn front(&self) -> Option<Bytes> {
        self.chunks
            .front()
            .map(|(_, bytes)| bytes.slice(self.offset..))
    }

    /// `n` bytes of [`Queue::front`] were written; the seq of the chunk that is now whole, if
    /// one is.
    pub fn wrote(&mut self, n: usize) -> Option<u64> {
        let (seq, len) = self.chunks.front().map(|(seq, b)| (*seq, b.len()))?;
        self.offset += n;
        if self.offset < len {
            return None;
        }
        self.chunks.pop_front();
        self.offset = 0;
        Some(seq)
    }

    /// The input ended and every chunk is written.
    pub fn done(&self) -> bool {
        self.eof && self.chunks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: u64, text: &'static str) -> (u64, Bytes) {
        (seq, Bytes::from_static(text.as_bytes()))
    }

    #[test]
    fn chunks_are_written_in_order_and_each_answered_once_whole() {
        let mut q = Queue::new(4, 16);
        q.push(vec![chunk(1, "hello "), chunk(2, "world")])
            .expect("in order");
        assert_eq!(q.front().as_deref(), Some(&b"hello "[..]));
        // A short write: the rest of the chunk comes next, and nothing is answered yet.
        assert_eq!(q.wrote(2), None);
        assert_eq!(q.front().as_deref(), Some(&b"llo "[..]));
        assert_eq!(q.wrote(4), Some(1));
        assert_eq!(q.wrote(5), Some(2));
        assert_eq!(q.front(), None);
        assert!(!q.done(), "the input has not ended");
        q.eof(2).expect("two were sent");
        assert!(q.done());
    }

    #[test]
    fn an_empty_chunk_is_answered_by_an_empty_write() {
        let mut q = Queue::new(1, 16);
        q.push(vec![chunk(1, "")]).expect("empty is fine");
        assert_eq!(q.front().as_deref(), Some(&b""[..]));
        assert_eq!(q.wrote(0), Some(1));
    }

    #[test]
    fn the_window_bounds_what_the_daemon_holds() {
        let mut q = Queue::new(2, 16);
        q.push(vec![chunk(1, "a"), chunk(2, "b")]).expect("within");
        let err = q.push(vec![chunk(3, "c")]).unwrap_err();
        assert!(err.contains("beyond the window of 2"), "{err}");
        // Once one is written there is room again.
        let mut q = Queue::new(2, 16);
        q.push(vec![chunk(1, "a"), chunk(2, "b")]).expect("within");
        q.wrote(1);
        q.push(vec![chunk(3, "c")]).expect("room for one more");
    }

    #[test]
    fn chunks_out_of_order_too_large_or_after_the_end_are_refused() {
        let mut q = Queue::new(8, 4);
        assert!(q
            .push(vec![chunk(2, "a")])
            .unwrap_err()
            .contains("out of order"));
        let mut q = Queue::new(8, 4);
        let err = q.push(vec![chunk(1, "12345")]).unwrap_err();
        assert_eq!(err, "stdin chunk 1 of 5 bytes is larger than 4 bytes");
        let mut q = Queue::new(8, 4);
        q.push(vec![chunk(1, "a")]).expect("fine");
        q.eof(1).expect("one sent");
        assert!(q
            .push(vec![chunk(2, "b")])
            .unwrap_err()
            .contains("after the end"));
        assert!(q.eof(1).is_err(), "twice");
    }

    #[test]
    fn the_end_must_count_what_was_sent() {
        let mut q = Queue::new(8, 4);
        q.push(vec![chunk(1, "a")]).expect("fine");
        assert_eq!(
            q.eof(3).unwrap_err(),
            "the input ended after 3 stdin chunks, but 1 came"
        );
        let mut q = Queue::new(8, 4);
        q.eof(0).expect("no input at all");
        assert!(q.done());
    }
}
