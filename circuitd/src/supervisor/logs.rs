//! Writing a worker's output: one log file per worker, one line per record with a timestamp and
//! the stream (`2026-11-21T03:30:00.123Z o text`), rotated by size. Pump tasks read the pipes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use circuit_sdk::proto::LogStream;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

/// Longest line kept whole; longer lines are split into records of this size.
pub const MAX_LINE: usize = 64 * 1024;

/// Bytes read from a pipe at a time. Small, because every live worker holds two of these
/// buffers; a line longer than this accumulates in `pending` up to `MAX_LINE`.
const READ_CHUNK: usize = 4096;

/// The current log file's name inside a worker's directory; rotated files add `.1`, `.2`, ...
pub const FILE_NAME: &str = "output.log";

/// A worker's log file, shared by its pump tasks and its readers.
pub struct LogFile {
    dir: PathBuf,
    writer: Mutex<Writer>,
    /// Bumped after every write, so followers know to read.
    written: watch::Sender<u64>,
}

struct Writer {
    /// Opened (and the directory created) at the first write: a silent worker costs no inode.
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    max_files: u32,
}

impl LogFile {
    /// The log in `dir`, appended to from its current size. Nothing is created until the
    /// first line is written.
    pub fn open(dir: &Path, max_bytes: u64, max_files: u32) -> io::Result<Arc<Self>> {
        let size = match std::fs::metadata(dir.join(FILE_NAME)) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer {
                file: None,
                size,
                max_bytes: max_bytes.max(1),
                max_files,
            }),
            written: watch::channel(0).0,
        }))
    }

    /// The directory holding the current and rotated files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A receiver that changes after every write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// Appends lines (without their newlines) from one stream, stamped with the current time.
    pub fn write_lines<'a>(&self, stream: LogStream, lines: impl IntoIterator<Item = &'a [u8]>) {
        let stamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let tag = match stream {
            LogStream::Stdout => " o ",
            LogStream::Stderr => " e ",
            LogStream::Circuit => " c ",
        };
        let mut writer = self.writer.lock().expect("log writer lock");
        let mut batch = Vec::with_capacity(4096);
        let mut result = Ok(());
        for line in lines {
            let len = (stamp.len() + tag.len() + line.len() + 1) as u64;
            // Rotate between records, never inside one: a file holds whole lines.
            if writer.size + batch.len() as u64 > 0
                && writer.size + batch.len() as u64 + len > writer.max_bytes
            {
                result = result.and(writer.write(&self.dir, &batch));
                batch.clear();
                result = result.and(writer.rotate(&self.dir));
            }
            batch.extend_from_slice(stamp.as_bytes());
            batch.extend_from_slice(tag.as_bytes());
            batch.extend_from_slice(line);
            batch.push(b'\n');
        }
        result = result.and(writer.write(&self.dir, &batch));
        drop(writer);
        if let Err(e) = result {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write worker log");
        }
        self.written.send_modify(|n| *n += 1);
    }
}

impl Writer {
    fn write(&mut self, dir: &Path, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                std::fs::create_dir_all(dir)?;
                self.file.insert(open_append(&rotated_path(dir, 0))?)
            }
        };
        file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// `output.log.(n-1)` → `.n`, ..., `output.log` → `.1`; the oldest beyond `max_files` goes.
    fn rotate(&mut self, dir: &Path) -> io::Result<()> {
        let path = |i: u32| rotated_path(dir, i);
        if self.max_files == 0 {
            let _ = std::fs::remove_file(path(0));
        } else {
            let _ = std::fs::remove_file(path(self.max_files));
            for i in (1..self.max_files).rev() {
                let _ = std::fs::rename(path(i), path(i + 1));
            }
            std::fs::rename(path(0), path(1))?;
        }
        self.file = None;
        self.size = 0;
        Ok(())
    }
}

/// `output.log` for 0, `output.log.N` for N.
pub fn rotated_path(dir: &Path, index: u32) -> PathBuf {
    if index == 0 {
        dir.join(FILE_NAME)
    } else {
        dir.join(format!("{FILE_NAME}.{index}"))
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Copies one pipe into the log until it closes, line by line.
pub async fn pump(mut pipe: impl AsyncRead + Unpin, stream: LogStream, log: Arc<LogFile>) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            lines.extend(pending[start..start + pos].chunks(MAX_LINE));
            start += pos + 1;
        }
        let rest = pending.len() - start;
        let mut cut = start;
        if rest >= MAX_LINE {
            // A line longer than MAX_LINE: keep the whole chunks, hold back the tail.
            cut = pending.len() - rest % MAX_LINE;
            lines.extend(pending[start..cut].chunks(MAX_LINE));
        }
        if !lines.is_empty() {
            log.write_lines(stream, lines);
        }
        pending.drain(..cut);
    }
    if !pending.is_empty() {
        log.write_lines(stream, [&pending[..]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogFile::open(dir.path(), 100, 2).expect("open");
        for i in 0..20 {
            let line = format!("line {i:02} {}", "x".repeat(40));
            log.write_lines(LogStream::Stdout, [line.as_bytes()]);
        }
        let names: Vec<String> = {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names, ["output.log", "output.log.1", "output.log.2"]);
        let current = std::fs::read_to_string(rotated_path(dir.path(), 0)).expect("read");
        assert!(
            current.ends_with(&format!("line 19 {}\n", "x".repeat(40))),
            "{current}"
        );
        assert!(current.contains(" o line 19"), "{current}");
    }

    #[tokio::test]
    async fn pump_splits_lines_and_flushes_the_last_partial_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogFile::open(dir.path(), 1 << 20, 1).expect("open");
        let long = "y".repeat(MAX_LINE + 10);
        let input = format!("a\nb\n{long}\ntail");
        pump(input.as_bytes(), LogStream::Stderr, log).await;
        let text = std::fs::read_to_string(rotated_path(dir.path(), 0)).expect("read");
        let bodies: Vec<&str> = text
            .lines()
            .map(|l| &l[l.find(" e ").expect("tag") + 3..])
            .collect();
        assert_eq!(bodies.len(), 5);
        assert_eq!(bodies[0], "a");
        assert_eq!(bodies[1], "b");
        assert_eq!(bodies[2].len(), MAX_LINE);
        assert_eq!(bodies[3], "y".repeat(10));
        assert_eq!(bodies[4], "tail");
    }
}
