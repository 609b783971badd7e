//! What a person watches while hosts install: one line per host that shows its current step
//! (a spinner, a byte bar while uploading) when stderr is a terminal, else plain lines
//! (`h1: uploading circuitd (34.2 MiB)`) as steps start.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display of a run.
pub struct Progress {
    /// `None` when stderr is not a terminal: plain lines instead.
    multi: Option<MultiProgress>,
    /// Labels are padded to this width so the steps line up.
    width: usize,
}

/// One host's line.
pub struct HostProgress {
    label: String,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A display for hosts named by `labels`: bars when stderr is a terminal.
    pub fn new(labels: &[String]) -> Self {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            multi,
            width: labels.iter().map(|l| l.chars().count()).max().unwrap_or(0),
        }
    }

    /// The line of a host, in the order hosts were added.
    pub fn host(&self, label: &str) -> HostProgress {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(spinner_style());
            bar.set_prefix(format!("{label:<w$}", w = self.width));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        HostProgress {
            label: label.to_string(),
            bar,
        }
    }

    /// Clears the bars, so the summary starts on a clean line.
    pub fn finish(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}

impl HostProgress {
    /// A new step: `connecting`, `checking`, `starting`, `waiting for the mesh`.
    pub fn step(&self, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(spinner_style());
                bar.set_message(message.to_string());
            }
            None => eprintln!("{}: {message}", self.label),
        }
    }

    /// An upload of `bytes` starts: a byte bar (or one line with the size).
    pub fn upload(&self, what: &str, bytes: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(bar_style());
                bar.set_length(bytes);
                bar.set_position(0);
                bar.set_message(format!("uploading {what}"));
            }
            None => eprintln!("{}: uploading {what} ({})", self.label, mib(bytes)),
        }
    }

    /// `n` more bytes are uploaded.
    pub fn advance(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// The host is done: its line keeps `message`.
    pub fn done(&self, message: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(done_style());
                bar.finish_with_message(message.to_string());
            }
            None => eprintln!("{}: {message}", self.label),
        }
    }
}

/// `34.2 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} {spinner} {wide_msg}").expect("a valid template")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30}] {binary_bytes}/{binary_total_bytes} {wide_msg}",
    )
    .expect("a valid template")
    .progress_chars("=> ")
}

fn done_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} {wide_msg}").expect("a valid template")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_mebibytes() {
        assert_eq!(mib(34 << 20), "34.0 MiB");
        assert_eq!(mib(110_000_000), "104.9 MiB");
    }

    #[test]
    fn templates_are_valid() {
        let _ = (spinner_style(), bar_style(), done_style());
    }
}
