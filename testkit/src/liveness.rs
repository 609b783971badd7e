//! Is it alive, and does the mesh agree: a process by pid ([`alive`], [`in_namespace`]), and
//! daemons that all see each other ([`converged`]).

use std::os::unix::fs::MetadataExt as _;

use circuit_sdk::proto::NodeState;

use crate::daemon::Daemon;

/// True if `pid` exists and is not a zombie. Daemons a script started are not our children,
/// and nobody may reap them, so a zombie counts as gone.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..i + 3))
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// True if `pid` lives in the named network namespace (`/run/netns/<netns>`).
pub fn in_namespace(pid: i32, netns: &str) -> bool {
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/net"));
    let named = std::fs::metadata(format!("/run/netns/{netns}"));
    match (theirs, named) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// True when every daemon sees every other one alive (`circuit nodes` on each).
pub fn converged(ds: &[&Daemon]) -> bool {
    ds.iter().all(|d| {
        let ns = d.nodes();
        ds.iter().all(|o| {
            ns.iter()
                .any(|n| n.name == o.name && n.state == NodeState::Alive)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        let me = i32::try_from(std::process::id()).expect("a pid");
        assert!(alive(me));
        assert!(!alive(i32::MAX));
        assert!(!in_namespace(me, "no-such-namespace"));
    }
}
