//! Restart decisions, sans-IO: whether an exit leads to a restart, after which delay, and when
//! the supervisor gives up. Pure functions of the spec, the history and the time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use circuit_sdk::proto::{ExitStatus, RestartPolicy, RestartSpec};

/// What to do after a worker's process exited on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Leave it exited.
    Exit,
    /// Start it again after this delay.
    Restart(Duration),
    /// Too many restarts in the window: mark it failed with this reason.
    GiveUp(String),
}

/// The restart history of one worker.
#[derive(Debug, Default)]
pub struct Restarts {
    /// Consecutive quick failures: the exponent of the next delay.
    attempt: u32,
    /// When recent restarts happened, oldest first, trimmed to the window.
    recent: VecDeque<Instant>,
}

impl Restarts {
    /// Decides what follows an exit with `status` after a run of `uptime`.
    /// `jitter` is a number in [0, 1) (random in production, fixed in tests).
    pub fn on_exit(
        &mut self,
        spec: &RestartSpec,
        status: ExitStatus,
        uptime: Duration,
        now: Instant,
        jitter: f64,
    ) -> Decision {
        let wanted = match spec.policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => !status.success(),
            RestartPolicy::Always => true,
        };
        if !wanted {
            return Decision::Exit;
        }
        if uptime >= Duration::from_millis(spec.stable_after_ms) {
            self.attempt = 0;
        }
        let window = Duration::from_millis(spec.window_ms);
        while let Some(&first) = self.recent.front() {
            if now.saturating_duration_since(first) > window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if spec.max_restarts > 0 && self.recent.len() >= spec.max_restarts as usize {
            return Decision::GiveUp(format!(
                "restarted {} times within {}; giving up (last exit: {status})",
                self.recent.len(),
                humantime::format_duration(window)
            ));
        }
        let delay = backoff(spec, self.attempt, jitter);
        self.attempt = self.attempt.saturating_add(1);
        self.recent.push_back(now + delay);
        Decision::Restart(delay)
    }

    /// Forgets the history (a manual restart).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// `initial * 2^attempt`, capped at `max`, then scaled by a factor in [0.8, 1.2).
pub fn backoff(spec: &RestartSpec, attempt: u32, jitter: f64) -> Duration {
    let base = spec
        .backoff_initial_ms
        .saturating_mul(1u64.checked_shl(attempt.min(40)).unwrap_or(u64::MAX))
        .min(spec.backoff_max_ms);
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    Duration::from_millis((base as f64 * factor) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: RestartPolicy) -> RestartSpec {
        RestartSpec {
            policy,
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            stable_after_ms: 5_000,
            max_restarts: 3,
            window_ms: 10_000,
        }
    }

    const FAIL: ExitStatus = ExitStatus::Code { code: 1 };
    const OK: ExitStatus = ExitStatus::Code { code: 0 };

    #[test]
    fn policies_decide_whether_to_restart() {
        let now = Instant::now();
        let quick = Duration::from_millis(10);
        let mut r = Restarts::default();
        assert_eq!(
            r.on_exit(&spec(RestartPolicy::Never), FAIL, quick, now, 0.5),
            Decision::Exit
        );
        assert_eq!(
            r.on_exit(&spec(RestartPolicy::OnFailure), OK, quick, now, 0.5),
            Decision::Exit
        );
        assert!(matches!(
            r.on_exit(
                &spec(RestartPolicy::OnFailure),
                ExitStatus::Signal { signal: 9 },
                quick,
                now,
                0.5
            ),
            Decision::Restart(_)
        ));
        assert!(matches!(
            Restarts::default().on_exit(&spec(RestartPolicy::Always), OK, quick, now, 0.5),
            Decision::Restart(_)
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let s = spec(RestartPolicy::Always);
        let ms = |a, j| backoff(&s, a, j).as_millis();
        assert_eq!(
            [ms(0, 0.5), ms(1, 0.5), ms(2, 0.5), ms(3, 0.5), ms(4, 0.5)],
            [100, 200, 400, 800, 1000]
        );
        assert_eq!(ms(60, 0.5), 1000);
        assert_eq!(ms(0, 0.0), 80);
        assert!(ms(0, 0.999) < 120);
    }

    #[test]
    fn gives_up_after_max_restarts_within_the_window() {
        let s = spec(RestartPolicy::Always);
        let mut r = Restarts::default();
        let mut now = Instant::now();
        let quick = Duration::from_millis(10);
        for expected in [100, 200, 400] {
            match r.on_exit(&s, FAIL, quick, now, 0.5) {
                Decision::Restart(d) => assert_eq!(d.as_millis(), expected),
                other => panic!("expected a restart, got {other:?}"),
            }
            now += Duration::from_millis(expected as u64 + 10);
        }
        assert!(matches!(
            r.on_exit(&s, FAIL, quick, now, 0.5),
            Decision::GiveUp(_)
        ));
    }

    #[test]
    fn restarts_outside_the_window_and_stable_runs_are_forgotten() {
        let s = spec(RestartPolicy::Always);
        let mut r = Restarts::default();
        let mut now = Instant::now();
        for _ in 0..3 {
            assert!(matches!(
                r.on_exit(&s, FAIL, Duration::ZERO, now, 0.5),
                Decision::Restart(_)
            ));
            now += Duration::from_secs(4);
        }
        // The first restart is now older than the 10 s window; a stable run resets the delay.
        match r.on_exit(&s, FAIL, Duration::from_secs(6), now, 0.5) {
            Decision::Restart(d) => assert_eq!(d.as_millis(), 100),
            other => panic!("expected a restart, got {other:?}"),
        }
    }
}
