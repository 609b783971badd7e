//! A short-lived sender for the tests: opens the channel bound as `out` (`CIRCUIT_CHAN_OUT`),
//! sends value 0 and waits until the owner has it, prints `ready`, waits for a line on stdin,
//! then sends values 1..=COUNT of SIZE bytes with `send().await` in a loop, prints `sent` and
//! returns from `main` without flushing or closing — as most programs end. Each value is its
//! number in 8 digits, padded with dots. `--current-thread` runs it on tokio's current-thread
//! runtime instead of the multi-thread one; `--tcp ADDR` reaches the daemon over TCP (no key)
//! instead of its Unix socket.
//!
//! Usage: `circuit-test-send-then-exit COUNT SIZE [--current-thread] [--tcp ADDR]`

use circuit_sdk::chan::{Chan, Raw};
use circuit_sdk::{Client, Target};

fn value(i: u64, size: usize) -> Vec<u8> {
    let mut v = format!("{i:08}").into_bytes();
    v.resize(size.max(8), b'.');
    v
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(count), Some(size)) = (
        args.get(1).and_then(|a| a.parse::<u64>().ok()),
        args.get(2).and_then(|a| a.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: circuit-test-send-then-exit COUNT SIZE [--current-thread] [--tcp ADDR]");
        return std::process::ExitCode::from(2);
    };
    let current_thread = args.iter().any(|a| a == "--current-thread");
    let tcp = args
        .iter()
        .position(|a| a == "--tcp")
        .and_then(|i| args.get(i + 1).cloned());
    let mut builder = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder.enable_all().build().expect("runtime");
    runtime.block_on(async {
        let sent = async {
            let chan = match tcp {
                Some(addr) => {
                    let name = std::env::var("CIRCUIT_CHAN_OUT").expect("CIRCUIT_CHAN_OUT");
                    let client = Client::connect(&Target::Tcp(addr)).await?;
                    client.chan(&name).await?
                }
                None => Chan::open_from_env("out").await?,
            };
            let tx = chan
                .sender_with::<Vec<u8>, _>(Raw, Default::default())
                .await?;
            tx.send(value(0, size)).await?;
            tx.flush().await?;
            println!("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).expect("stdin");
            for i in 1..=count {
                tx.send(value(i, size)).await?;
            }
            println!("sent");
            Ok::<_, circuit_sdk::chan::ChanError>(())
        };
        match sent.await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("send-then-exit: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
