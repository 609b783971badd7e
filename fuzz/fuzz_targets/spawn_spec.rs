//! Fuzz target `spawn_spec`: arbitrary bytes as the JSON of a spawn request's `SpawnSpec`, then
//! the daemon's checks on it (`validate::spec`); the bytes as text also go through
//! `validate::name` and `validate::signal`. None of it may panic.
#![no_main]

use circuit_sdk::proto::SpawnSpec;
use circuitd::supervisor::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = serde_json::from_slice::<SpawnSpec>(data) {
        let verdict = validate::spec(&spec);
        // Serialising and parsing back must not change the spec, nor the verdict on it.
        let json = serde_json::to_vec(&spec).expect("a parsed spec serialises");
        let again: SpawnSpec = serde_json::from_slice(&json).expect("re-parse");
        assert_eq!(again, spec);
        assert_eq!(
            validate::spec(&again).map_err(|e| e.to_string()),
            verdict.map_err(|e| e.to_string())
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // Worker names become file names (logs, the job table): an accepted one never leaves
        // its directory.
        if validate::name(text).is_ok() {
            assert!(!text.is_empty() && text.len() <= circuit_sdk::proto::MAX_WORKER_NAME);
            assert!(
                !text.contains(['/', '\0']) && !text.starts_with('.'),
                "{text:?}"
            );
        }
        let _ = validate::signal(text);
    }
});
