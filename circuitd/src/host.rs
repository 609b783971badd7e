//! What this host has, read from `/proc`: its load average and its memory. Published in this
//! node's metadata and shown fresh for the answering node by `nodes`.

/// The 1-minute load average, to one decimal.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |l| (l * 10.0).round() / 10.0)
}

/// The host's memory, from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `MemTotal`, in bytes.
    pub total_bytes: u64,
    /// `MemAvailable`, in bytes.
    pub available_bytes: u64,
}

/// The host's memory now; zeros where `/proc/meminfo` cannot be read.
pub fn memory() -> Memory {
    std::fs::read_to_string("/proc/meminfo")
        .map(|text| parse_meminfo(&text))
        .unwrap_or_default()
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo` text (`MemTotal:  16318412 kB`).
fn parse_meminfo(text: &str) -> Memory {
    let mut memory = Memory::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let field = match key {
            "MemTotal" => &mut memory.total_bytes,
            "MemAvailable" => &mut memory.available_bytes,
            _ => continue,
        };
        let mut words = rest.split_whitespace();
        let value = words
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        *field = match words.next() {
            Some("kB") => value.saturating_mul(1024),
            _ => value,
        };
    }
    memory
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_gives_total_and_available_bytes() {
        let text = "MemTotal:       16318412 kB\nMemFree:         1234567 kB\n\
                    MemAvailable:    9876543 kB\nBuffers:          100 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Memory {
                total_bytes: 16_318_412 * 1024,
                available_bytes: 9_876_543 * 1024,
            }
        );
        assert_eq!(parse_meminfo("garbage\n"), Memory::default());
        let here = memory();
        assert!(here.total_bytes > 0 && here.available_bytes <= here.total_bytes);
    }
}
