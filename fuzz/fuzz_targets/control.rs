//! Fuzz target `control`: arbitrary bytes as the JSON body of a control frame, read as a
//! `ClientMessage` (what a daemon reads) and a `ServerMessage` (what a client reads). Parsing must
//! never panic; a message that parses serialises and parses back to the same message and JSON.
#![no_main]

use circuit_sdk::proto::{ClientMessage, ServerMessage};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fuzz_target!(|data: &[u8]| {
    round_trip::<ClientMessage>(data);
    round_trip::<ServerMessage>(data);
});

fn round_trip<M>(data: &[u8])
where
    M: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(msg) = serde_json::from_slice::<M>(data) else {
        return;
    };
    let json = serde_json::to_vec(&msg).expect("a parsed message serialises");
    let again: M = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "re-parsing {} failed: {e}; message {msg:?}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(again, msg);
    let value = serde_json::to_value(&msg).expect("to_value");
    let value_again = serde_json::to_value(&again).expect("to_value");
    assert_eq!(value, value_again);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&json).expect("valid JSON"),
        value
    );
}
