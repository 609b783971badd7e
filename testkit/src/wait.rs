//! Polling a condition until a deadline, never sleeping to synchronise: [`try_wait_until`] and
//! [`try_wait_until_async`] return an error when time runs out; [`wait_until`] and
//! [`wait_until_async`] are the tests' forms, which panic with what was awaited.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often the conditions are polled unless a caller says otherwise.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` every `every` until it is true; [`Error::TimedOut`] naming `what` after
/// `timeout`.
pub fn try_wait_until_every(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return Err(Error::TimedOut {
                what: what.to_string(),
                after: timeout,
                log: String::new(),
            });
        }
        std::thread::park_timeout(every);
    }
    Ok(())
}

/// Polls `cond` every 10 ms until it is true; [`Error::TimedOut`] naming `what` after
/// `timeout`.
pub fn try_wait_until(timeout: Duration, what: &str, cond: impl FnMut() -> bool) -> Result<()> {
    try_wait_until_every(timeout, POLL, what, cond)
}

/// Polls `cond` every 10 ms until it is true; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    if let Err(e) = try_wait_until(timeout, what, cond) {
        panic!("{e}");
    }
}

/// Async form of [`try_wait_until`]: `cond` returns `Some(value)` when done.
pub async fn try_wait_until_async<T, F, Fut>(
    timeout: Duration,
    what: &str,
    mut cond: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::TimedOut {
                what: what.to_string(),
                after: timeout,
                log: String::new(),
            });
        }
        tokio::time::sleep_until(tokio::time::Instant::now() + POLL).await;
    }
}

/// Async form of [`wait_until`]: `cond` returns `Some(value)` when done; panics with `what`
/// after `timeout`.
pub async fn wait_until_async<T, F, Fut>(timeout: Duration, what: &str, cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match try_wait_until_async(timeout, what, cond).await {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_true_condition_returns_at_once_and_a_false_one_names_itself() {
        let start = Instant::now();
        try_wait_until(Duration::from_secs(60), "true", || true).expect("true is true");
        assert!(start.elapsed() < Duration::from_secs(1));
        let err = try_wait_until(Duration::from_millis(30), "pigs fly", || false)
            .expect_err("pigs do not fly");
        assert!(err.is_timeout());
        assert_eq!(
            err.to_string(),
            "timed out after 30ms waiting until pigs fly"
        );
    }

    #[tokio::test]
    async fn the_async_form_returns_the_value() {
        let mut n = 0;
        let got = try_wait_until_async(Duration::from_secs(10), "n reaches 3", || {
            n += 1;
            let now = n;
            async move { (now >= 3).then_some(now) }
        })
        .await
        .expect("it counts");
        assert_eq!(got, 3);
    }
}
