//! Value parsers for flags: `KEY=VALUE` pairs, durations (`500ms`, `10s`), byte sizes (`10M`)
//! and mesh addresses (`HOST[:PORT]`). Each returns a message clap shows as `invalid value '...' for '--flag': <message>`.

use std::time::Duration;

/// Parses `KEY=VALUE`: the key is non-empty and the value may be empty or hold more `=`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    let Some((key, value)) = s.split_once('=') else {
        return Err(format!("expected KEY=VALUE, but \"{s}\" has no \"=\""));
    };
    if key.is_empty() {
        return Err(format!("expected KEY=VALUE, but \"{s}\" has an empty key"));
    }
    if key.chars().any(|c| c.is_whitespace() || c == '\0') || value.contains('\0') {
        return Err(format!(
            "the key in \"{s}\" contains whitespace or a NUL byte"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Parses a channel binding `NAME=CHANNEL` (`in=jobs`): both sides are non-empty.
pub fn chan_binding(s: &str) -> Result<(String, String), String> {
    let (name, chan) =
        key_value(s).map_err(|_| format!("expected NAME=CHANNEL (like in=jobs), got \"{s}\""))?;
    if chan.is_empty() {
        return Err(format!("the channel name in \"{s}\" is empty"));
    }
    Ok((name, chan))
}

/// Parses a mesh address `HOST[:PORT]` (`10.0.0.1:7711`, `h1`, `[::1]:7711`). It is passed on
/// as written: the daemon resolves the host and adds its default port when there is none.
pub fn mesh_addr(s: &str) -> Result<String, String> {
    let bad = || format!("expected HOST or HOST:PORT (like 10.0.0.1:7711), got \"{s}\"");
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(bad());
    }
    let port = if let Some(rest) = s.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        if host.is_empty() {
            return Err(bad());
        }
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        }
    } else {
        match s.split_once(':') {
            // One colon: `host:port`; more: a bare IPv6 address.
            Some((host, port)) if !port.contains(':') => {
                if host.is_empty() {
                    return Err(bad());
                }
                Some(port)
            }
            _ => None,
        }
    };
    match port.map(str::parse::<u16>) {
        None | Some(Ok(1..)) => Ok(s.to_string()),
        Some(_) => Err(format!(
            "the port in \"{s}\" is not a number from 1 to 65535"
        )),
    }
}

/// Parses a duration such as `500ms`, `10s`, `1m30s` or `0`.
pub fn duration(s: &str) -> Result<humantime::Duration, String> {
    // A bare number is seconds, as in `stop --timeout 5`.
    if let Ok(secs) = s.trim().parse::<f64>() {
        if (0.0..1e9).contains(&secs) {
            return Ok(Duration::from_secs_f64(secs).into());
        }
    }
    s.trim()
        .parse::<humantime::Duration>()
        .map_err(|e| match e {
            humantime::DurationError::UnknownUnit { .. } => e.to_string(),
            _ => "expected a duration like 500ms, 10s or 1m30s".to_string(),
        })
}

/// A duration as the whole milliseconds the protocol carries (saturating).
pub fn millis(d: impl Into<Duration>) -> u64 {
    u64::try_from(d.into().as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds as a duration flag's default value (`200` → `200ms`).
pub fn from_millis(ms: u64) -> humantime::Duration {
    Duration::from_millis(ms).into()
}

/// A channel capacity: a whole number of values from 0 to the most a channel may hold.
pub fn capacity(s: &str) -> Result<u64, String> {
    let max = circuit_sdk::proto::MAX_CAPACITY;
    let t = s.trim();
    let plain = || {
        format!("the capacity is a whole number of values from 0 (every send waits for a receiver) to {max}, not \"{s}\"")
    };
    if t.starts_with('-') {
        return Err(format!(
            "{}: a channel cannot be unbounded, pick the most values it may hold",
            plain()
        ));
    }
    let n: u64 = t.parse().map_err(|_| plain())?;
    circuit_sdk::proto::validate_capacity(n)?;
    Ok(n)
}

/// Parses a byte size: a number with an optional binary suffix (`4096`, `512K`, `10M`, `1G`).
pub fn bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match t[digits.len()..].to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit \"{other}\" (expected a number of bytes, or K, M or G)"
            ))
        }
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("expected a size like 4096, 512K or 10M, got \"{s}\""))?;
    n.checked_mul(unit)
        .ok_or_else(|| format!("the size \"{s}\" is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_splits_at_the_first_equals() {
        assert_eq!(key_value("A=1"), Ok(("A".into(), "1".into())));
        assert_eq!(key_value("A="), Ok(("A".into(), String::new())));
        assert_eq!(key_value("URL=a=b"), Ok(("URL".into(), "a=b".into())));
    }

    #[test]
    fn key_value_rejects_bad_pairs_with_a_reason() {
        let err = key_value("A").unwrap_err();
        assert!(err.contains("KEY=VALUE") && err.contains("\"A\""), "{err}");
        assert!(key_value("=1").unwrap_err().contains("empty key"));
        assert!(key_value("A B=1").is_err());
        assert!(chan_binding("in=").unwrap_err().contains("empty"));
        assert_eq!(chan_binding("in=jobs"), Ok(("in".into(), "jobs".into())));
    }

    #[test]
    fn mesh_addresses_need_a_host_and_may_have_a_port() {
        for good in [
            "10.0.0.1:7711",
            "h1",
            "h1:7711",
            "[::1]:7711",
            "[::1]",
            "fe80::1",
        ] {
            assert_eq!(mesh_addr(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            ":7711",
            "h1:",
            "h1:0",
            "h1:x",
            "a b:1",
            "[]:1",
            "[::1",
            "[::1]7711",
        ] {
            assert!(mesh_addr(bad).is_err(), "{bad:?}");
        }
        assert!(mesh_addr("h1:70000").unwrap_err().contains("1 to 65535"));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(millis(duration("500ms").unwrap()), 500);
        assert_eq!(millis(duration("1m30s").unwrap()), 90_000);
        assert_eq!(millis(duration("0").unwrap()), 0);
        assert_eq!(millis(duration("5").unwrap()), 5_000);
        assert_eq!(millis(duration("0.25").unwrap()), 250);
        assert!(duration("-1").is_err());
        assert!(duration("ten").unwrap_err().contains("like 500ms"));
        assert_eq!(bytes("4096"), Ok(4096));
        assert_eq!(bytes("10M"), Ok(10 << 20));
        assert!(bytes("10X").is_err() && bytes("M").is_err());
    }
}
