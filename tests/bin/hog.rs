//! A worker for the resource tests: holds a known amount of memory and burns a known share of
//! CPU. `--mib N` allocates N MiB and touches every page (so all of it is resident); `--spin`
//! keeps one core busy (otherwise it sleeps); `--children K` first starts K copies of itself
//! without `--children`, in its process group, and kills them when it is killed (they share
//! its group, which the supervisor signals as a whole).

use std::hint::black_box;
use std::process::Command;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>().expect("a number after the flag"))
    };
    let mib = value("--mib").unwrap_or(0);
    let spin = args.iter().any(|a| a == "--spin");
    let children = value("--children").unwrap_or(0);
    let mut child_args = vec!["--mib".to_string(), mib.to_string()];
    if spin {
        child_args.push("--spin".into());
    }
    let _children: Vec<_> = (0..children)
        .map(|_| {
            Command::new(std::env::current_exe().expect("own path"))
                .args(&child_args)
                .spawn()
                .expect("start a child")
        })
        .collect();
    let mut memory = vec![0u8; mib << 20];
    for page in memory.chunks_mut(4096) {
        page[0] = 1;
    }
    black_box(&memory);
    println!("holding {mib} MiB{}", if spin { ", spinning" } else { "" });
    if spin {
        let mut x = 0u64;
        loop {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
