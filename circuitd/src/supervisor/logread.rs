//! Reading a worker's log back: from the oldest rotated file to the current one, then following
//! the current file across rotations (like `tail -F`, but without losing lines: an open file
//! stays readable after it is renamed, and the files that came after it are found by inode).
//! Blocking file I/O: callers run it on the blocking pool.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use circuit_sdk::proto::{LogLine, LogStream};

use super::logs::rotated_path;

/// A position in a worker's log.
pub struct Cursor {
    dir: PathBuf,
    max_files: u32,
    /// Files still to read, oldest first; the last one is the one being written (or was).
    queue: VecDeque<File>,
    partial: Vec<u8>,
    filter: Option<LogStream>,
    /// Without a filter, also the supervisor's lifecycle lines.
    lifecycle: bool,
}

impl Cursor {
    /// A cursor at the start of everything kept, oldest rotated file first.
    pub fn open(dir: &Path, max_files: u32, filter: Option<LogStream>) -> io::Result<Self> {
        // The current file first: if it rotates while we open the others, we still hold it.
        // A worker that has not written anything yet has no file: it is picked up later.
        let current = match File::open(rotated_path(dir, 0)) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut queue = VecDeque::new();
        for i in (1..=max_files).rev() {
            if let Ok(f) = File::open(rotated_path(dir, i)) {
                queue.push_back(f);
            }
        }
        queue.extend(current);
        Ok(Self {
            dir: dir.to_path_buf(),
            max_files,
            queue,
            partial: Vec::new(),
            filter,
            lifecycle: false,
        })
    }

    /// Also yields the supervisor's lifecycle lines when no stream is picked.
    pub fn with_lifecycle(mut self, lifecycle: bool) -> Self {
        self.lifecycle = lifecycle;
        self
    }

    /// Reads up to about `budget` bytes; returns the complete lines read and whether the end of
    /// what has been written was reached.
    pub fn read(&mut self, budget: usize) -> io::Result<(Vec<LogLine>, bool)> {
        let mut lines = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut spent = 0;
        while spent < budget {
            let Some(file) = self.queue.front_mut() else {
                match File::open(rotated_path(&self.dir, 0)) {
                    Ok(f) => {
                        self.queue.push_back(f);
                        continue;
                    }
                    Err(_) => return Ok((lines, true)),
                }
            };
            let n = file.read(&mut buf)?;
            spent += n;
            if n > 0 {
                self.take_lines(&buf[..n], &mut lines);
                continue;
            }
            if self.queue.len() > 1 {
                self.queue.pop_front();
                continue;
            }
            // At the end of the newest file we hold: has it been rotated away?
            if !self.follow_rotation()? {
                return Ok((lines, true));
            }
        }
        Ok((lines, false))
    }

    /// If the file we hold is no longer the current one, queues the files written after it.
    fn follow_rotation(&mut self) -> io::Result<bool> {
        let Some(held) = self.queue.back() else {
            return Ok(false);
        };
        let held_ino = held.metadata()?.ino();
        let current = match std::fs::metadata(rotated_path(&self.dir, 0)) {
            Ok(m) => m.ino(),
            Err(_) => return Ok(false),
        };
        if current == held_ino {
            return Ok(false);
        }
        // Where did our file go? `.k`; then `.k-1` ... `.1` and the current one come next.
        let position = (1..=self.max_files).find(|&i| {
            std::fs::metadata(rotated_path(&self.dir, i)).is_ok_and(|m| m.ino() == held_ino)
        });
        let newer = match position {
            Some(k) => k - 1,
            None => self.max_files, // our file was deleted: continue with the oldest kept
        };
        for i in (0..=newer).rev() {
            if let Ok(f) = File::open(rotated_path(&self.dir, i)) {
                self.queue.push_back(f);
            }
        }
        Ok(self.queue.len() > 1)
    }

    fn take_lines(&mut self, data: &[u8], out: &mut Vec<LogLine>) {
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.push(&rest[..pos], out);
            } else {
                self.partial.extend_from_slice(&rest[..pos]);
                let record = std::mem::take(&mut self.partial);
                self.push(&record, out);
            }
            rest = &rest[pos + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    fn push(&self, record: &[u8], out: &mut Vec<LogLine>) {
        if let Some(line) = parse_record(record) {
            let keep = match self.filter {
                Some(only) => only == line.stream,
                None => line.stream != LogStream::Circuit || self.lifecycle,
            };
            if keep {
                out.push(line);
            }
        }
    }
}

/// Parses `2026-11-21T03:30:00.123Z o text`.
pub fn parse_record(record: &[u8]) -> Option<LogLine> {
    let space = record.iter().position(|&b| b == b' ')?;
    let stamp = std::str::from_utf8(&record[..space]).ok()?;
    let ts = humantime::parse_rfc3339(stamp).ok()?;
    let ts_ms = ts.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64;
    let stream = match record.get(space + 1..space + 3)? {
        b"o " => LogStream::Stdout,
        b"e " => LogStream::Stderr,
        b"c " => LogStream::Circuit,
        _ => return None,
    };
    let line = String::from_utf8_lossy(&record[space + 3..]).into_owned();
    Some(LogLine {
        ts_ms,
        stream,
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::super::logs::LogFile;
    use super::*;

    fn texts(lines: &[LogLine]) -> Vec<String> {
        lines.iter().map(|l| l.line.clone()).collect()
    }

    #[test]
    fn reads_across_rotations_in_order_and_filters_streams() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogFile::open(dir.path(), 60, 3).expect("open");
        for i in 0..6 {
            let stream = if i % 2 == 0 {
                LogStream::Stdout
            } else {
                LogStream::Stderr
            };
            log.write_lines(stream, [format!("line {i}").as_bytes()]);
        }
        let mut all = Cursor::open(dir.path(), 3, None).expect("cursor");
        let (lines, eof) = all.read(usize::MAX).expect("read");
        assert!(eof);
        assert_eq!(texts(&lines), ["line 2", "line 3", "line 4", "line 5"]);
        let mut errs = Cursor::open(dir.path(), 3, Some(LogStream::Stderr)).expect("cursor");
        assert_eq!(
            texts(&errs.read(usize::MAX).expect("read").0),
            ["line 3", "line 5"]
        );
    }

    #[test]
    fn a_follower_loses_nothing_when_the_file_rotates_under_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogFile::open(dir.path(), 120, 5).expect("open");
        log.write_lines(LogStream::Stdout, [&b"first"[..]]);
        let mut cursor = Cursor::open(dir.path(), 5, None).expect("cursor");
        let mut seen = texts(&cursor.read(usize::MAX).expect("read").0);
        for i in 0..10 {
            log.write_lines(LogStream::Stdout, [format!("next {i}").as_bytes()]);
        }
        let (more, eof) = cursor.read(usize::MAX).expect("read");
        assert!(eof);
        seen.extend(texts(&more));
        let expected: Vec<String> = std::iter::once("first".to_string())
            .chain((0..10).map(|i| format!("next {i}")))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn nothing_is_created_until_the_first_line_and_a_waiting_reader_picks_it_up() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("w");
        let log = LogFile::open(&dir, 1 << 20, 2).expect("open");
        assert!(!dir.exists(), "a silent worker costs no directory");
        let mut cursor = Cursor::open(&dir, 2, None).expect("cursor on a missing log");
        assert_eq!(cursor.read(usize::MAX).expect("read"), (vec![], true));
        log.write_lines(LogStream::Stdout, [&b"late"[..]]);
        assert_eq!(texts(&cursor.read(usize::MAX).expect("read").0), ["late"]);
    }
}
