//! The wall clock, in the one unit the daemon stores and sends: milliseconds since the Unix
//! epoch. Sans-IO parts take the time as an argument; this is where the callers read it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is set before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
