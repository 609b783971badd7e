//! Human and JSON output: `docker ps`-style tables (`table`) fitted to the terminal with
//! `style`, short durations (`2m10s`), timestamps, and JSON documents or lines. Writers return
//! `io::Error` as is, so a closed pipe is seen.

pub mod style;
mod table;

pub use table::{cut as truncate, Table};

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use circuit_sdk::proto::{EscapedProcess, WorkerEnd};
use serde::Serialize;

/// A duration in its two largest units: `3s`, `2m10s`, `1h4m`, `2d3h`; a zero second unit is
/// left out (`2m`). Below a second it is `0s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    let (big, big_unit, small, small_unit) = match s {
        0..60 => return format!("{secs}s"),
        60..3_600 => (mins, "m", secs, "s"),
        3_600..86_400 => (hours, "h", mins, "m"),
        _ => (days, "d", hours, "h"),
    };
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

/// [`duration`] of a number of milliseconds.
pub fn duration_ms(ms: u64) -> String {
    duration(Duration::from_millis(ms))
}

/// A byte count, exactly and as `--log-max-size` reads it: `16M`, `512K`, `1000`. A unit is
/// used only when it divides the count.
pub fn size(bytes: u64) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// An amount of memory for a table, rounded: `512B`, `980K`, `12.3M`, `1.2G` (binary units,
/// one decimal below 100).
pub fn mem(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "K", "M", "G", "T"] {
        if value < 1024.0 || unit == "T" {
            return if unit == "B" || value >= 100.0 {
                format!("{value:.0}{unit}")
            } else {
                format!("{value:.1}{unit}")
            };
        }
        value /= 1024.0;
    }
    unreachable!("the loop returns at T")
}

/// How long ago `ts_ms` was at `now_ms` (`0s` if it is in the future).
pub fn ago(ts_ms: u64, now_ms: u64) -> String {
    duration_ms(now_ms.saturating_sub(ts_ms))
}

/// How long until `ts_ms` from `now_ms` (`0s` if it has passed).
pub fn until(ts_ms: u64, now_ms: u64) -> String {
    duration_ms(ts_ms.saturating_sub(now_ms))
}

/// A protocol timestamp as RFC 3339 in UTC with milliseconds: `2024-05-01T12:00:00.250Z`.
pub fn timestamp(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Now, in milliseconds since the Unix epoch, like the protocol's timestamps.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Prints one line on stdout.
pub fn line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")
}

/// Prints `value` as one pretty JSON document on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    line(&serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Prints a list as one JSON object holding it under `key` (`{"workers": [...]}`): every verb's
/// `--json` document is an object, so it can gain fields without breaking its readers.
pub fn json_list<T: Serialize>(key: &str, list: &[T]) -> anyhow::Result<()> {
    let mut doc = serde_json::Map::new();
    doc.insert(key.to_string(), serde_json::to_value(list)?);
    json(&doc)
}

/// How a worker ended, for a person: `worker w exited (code 3)`, `worker w failed: <reason>`.
pub fn worker_end(end: &WorkerEnd) -> String {
    let mut text = format!("worker {} {}", end.name, end.state);
    if let Some(exit) = end.exit {
        text.push_str(&format!(" ({exit})"));
    }
    if let Some(reason) = &end.reason {
        text.push_str(&format!(": {reason}"));
    }
    text
}

/// A worker's escaped descendants for a sentence: `1 process (4242 sleep 1000)`, `2 processes
/// (4242 a, 4243 b)`; control characters in the command lines do not reach the terminal.
pub fn processes(list: &[EscapedProcess]) -> String {
    let each: Vec<String> = list
        .iter()
        .map(|p| format!("{} {}", p.pid, table::clean(&p.command)))
        .collect();
    let noun = if list.len() == 1 {
        "process"
    } else {
        "processes"
    };
    format!("{} {noun} ({})", list.len(), each.join(", "))
}

/// Shows a command line, quoting words a shell would split: `sh -c 'echo hi'`.
pub fn command_line(command: &str, args: &[String]) -> String {
    std::iter::once(command)
        .chain(args.iter().map(String::as_str))
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                word.to_string()
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_two_units() {
        let cases = [
            (0, "0s"),
            (3, "3s"),
            (59, "59s"),
            (60, "1m"),
            (130, "2m10s"),
        ];
        for (secs, want) in cases.into_iter().chain([(3_840, "1h4m"), (3_600, "1h")]) {
            assert_eq!(duration(Duration::from_secs(secs)), want);
        }
        assert_eq!(
            duration(Duration::from_secs(2 * 86_400 + 3 * 3_600 + 59)),
            "2d3h"
        );
        assert_eq!(duration_ms(999), "0s");
        assert_eq!(ago(10_000, 5_000), "0s");
    }

    #[test]
    fn odd_words_are_quoted_and_timestamps_exact() {
        assert_eq!(
            command_line("sh", &["-c".into(), "echo it's".into()]),
            r"sh -c 'echo it'\''s'"
        );
        assert_eq!(timestamp(1_500), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn sizes_use_a_unit_only_when_exact() {
        assert_eq!(size(16 << 20), "16M");
        assert_eq!(size(3 << 30), "3G");
        assert_eq!(size(1536), "1536");
        assert_eq!(size(2048), "2K");
        assert_eq!(size(1000), "1000");
        assert_eq!(size(0), "0");
    }
}
