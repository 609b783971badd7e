//! How wide and how colourful this process's output may be: set once from `--wide`, the
//! terminal (its width, whether stdout is one) and the conventions `COLUMNS` and `NO_COLOR`.

use std::io;
use std::sync::OnceLock;

/// The chosen style, set by [`init`] before any output.
static STYLE: OnceLock<Style> = OnceLock::new();

/// What tables may do on this stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// The width a line must fit in; `None` for no limit (`--wide`, or not a terminal).
    pub columns: Option<usize>,
    /// Whether states are shown in colour (a terminal, and `NO_COLOR` unset).
    pub colour: bool,
}

impl Style {
    /// The style [`init`] chose, or the one for no `--wide` if it was not called.
    pub fn current() -> Self {
        *STYLE.get_or_init(|| detect(false))
    }
}

/// Chooses the style once, from `--wide` and the environment.
pub fn init(wide: bool) {
    let _ = STYLE.set(detect(wide));
}

/// `COLUMNS` wins (as for `ls`), then the terminal's width; a pipe or file has no limit, so
/// `circuit ps | grep` sees whole lines.
fn detect(wide: bool) -> Style {
    let stdout = io::stdout();
    let terminal = rustix::termios::isatty(&stdout);
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0);
    let from_terminal = || {
        terminal
            .then(|| rustix::termios::tcgetwinsize(&stdout).ok())
            .flatten()
            .map(|size| usize::from(size.ws_col))
            .filter(|c| *c > 0)
    };
    let columns = if wide {
        None
    } else {
        from_env.or_else(from_terminal)
    };
    let colour = terminal
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb");
    Style { columns, colour }
}

/// `state` in the colour operators expect: green for running or alive, yellow for states on
/// the way (starting, restarting, suspect, stopping), red for failures, dim for the finished.
pub fn paint_state(state: &str) -> String {
    let code = match state.trim() {
        "running" | "alive" | "leader" | "follower" | "ok" => "32",
        "starting" | "restarting" | "backoff" | "stopping" | "suspect" | "catching up"
        | "pending" => "33",
        "failed" | "gave_up" | "gave up" | "dead" | "lost" | "error" => "31",
        "exited" | "stopped" | "left" | "closed" => "2",
        _ => return state.to_string(),
    };
    format!("\u{1b}[{code}m{state}\u{1b}[0m")
}
