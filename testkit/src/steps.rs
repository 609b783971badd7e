//! [`Steps`]: one expensive test as a list of named steps that share its setup. A failing step
//! is recorded with its name and message and the next steps still run; the test then fails
//! once, naming every step that failed (the first named as the likely cause of the rest).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// The steps of one test, run in order. Call [`Steps::finish`] at the end; dropping it with
/// failures recorded panics too.
#[derive(Debug)]
pub struct Steps {
    test: String,
    started: Instant,
    /// Steps run so far.
    ran: usize,
    /// Name and panic message of every step that failed.
    failed: Vec<(String, String)>,
    finished: bool,
}

impl Steps {
    /// No steps run yet, for the test named `test`.
    pub fn new(test: &str) -> Self {
        Self {
            test: test.to_string(),
            started: Instant::now(),
            ran: 0,
            failed: Vec::new(),
            finished: false,
        }
    }

    /// Runs step `name`: a panic inside it (a failed assertion) is recorded and the run goes on
    /// to the next step. Returns whether the step passed.
    pub fn run(&mut self, name: &str, step: impl FnOnce()) -> bool {
        self.ran += 1;
        eprintln!(
            "--- {}: step {} `{name}` at {:?}",
            self.test,
            self.ran,
            self.started.elapsed()
        );
        match catch_unwind(AssertUnwindSafe(step)) {
            Ok(()) => true,
            Err(panic) => {
                let message = message(&*panic);
                eprintln!("--- {}: step `{name}` FAILED: {message}", self.test);
                self.failed.push((name.to_string(), message));
                false
            }
        }
    }

    /// The names of the steps that failed so far.
    pub fn failures(&self) -> Vec<&str> {
        self.failed.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// Panics, naming every failed step and its message, if any step failed.
    pub fn finish(mut self) {
        self.finished = true;
        if let Some(report) = self.report() {
            panic!("{report}");
        }
    }

    fn report(&self) -> Option<String> {
        let (first, _) = self.failed.first()?;
        let mut report = format!(
            "{}: {} of {} steps failed (the first, `{first}`, may have caused the others):",
            self.test,
            self.failed.len(),
            self.ran
        );
        for (name, message) in &self.failed {
            report.push_str(&format!("\n- `{name}`: {message}"));
        }
        Some(report)
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() {
            if let Some(report) = self.report() {
                panic!("{report}");
            }
        }
    }
}

/// A panic's message, when it has one.
fn message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failed_step_is_named_and_later_steps_still_run() {
        let mut steps = Steps::new("t");
        let mut later_ran = false;
        assert!(steps.run("good", || {}));
        assert!(!steps.run("bad", || panic!("boom")));
        assert!(steps.run("later", || later_ran = true));
        assert!(!steps.run("worse", || assert_eq!(1, 2, "one is not two")));
        assert!(later_ran);
        assert_eq!(steps.failures(), ["bad", "worse"]);
        let report = catch_unwind(AssertUnwindSafe(|| steps.finish())).expect_err("it fails");
        let report = message(&*report);
        assert!(
            report.starts_with("t: 2 of 4 steps failed (the first, `bad`"),
            "{report}"
        );
        assert!(report.contains("- `bad`: boom"), "{report}");
        assert!(report.contains("one is not two"), "{report}");
    }

    #[test]
    fn passing_steps_finish_quietly() {
        let mut steps = Steps::new("t");
        steps.run("a", || {});
        steps.finish();
    }
}
