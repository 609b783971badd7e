//! A short-lived worker for the tests: opens the channel bound as `in` (`--chan in=NAME`, or
//! `CIRCUIT_CHAN_IN`), receives one value with `recv()`, prints it and returns from `main`
//! without closing anything — as most programs end. `--current-thread` runs it on tokio's
//! current-thread runtime instead of the multi-thread one.

use circuit_sdk::chan::{Chan, Raw};

fn main() -> std::process::ExitCode {
    let current_thread = std::env::args().any(|a| a == "--current-thread");
    let mut builder = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder.enable_all().build().expect("runtime");
    runtime.block_on(async {
        let chan = match Chan::open_from_env("in").await {
            Ok(chan) => chan,
            Err(e) => {
                eprintln!("take-one: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let mut rx = match chan
            .receiver_with::<Vec<u8>, _>(Raw, Default::default())
            .await
        {
            Ok(rx) => rx,
            Err(e) => {
                eprintln!("take-one: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        match rx.recv().await {
            Ok(value) => {
                println!("{}", String::from_utf8_lossy(&value));
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("take-one: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
