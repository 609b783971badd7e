//! The terminal while `circuit top` runs: raw mode (keys one at a time, unechoed), the
//! alternate screen (what was on the terminal comes back after), no cursor. [`Screen`] puts
//! the terminal back when it is dropped — on `q`, on an error — and a panic hook does the same
//! before the panic message is printed.

use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

/// Set while the terminal is set up, so that it is put back once, and only then.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The terminal, set up for drawing; set back as it was when dropped.
pub struct Screen {
    /// Draws on stdout.
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    /// Sets the terminal up. If a step fails, what was done is undone.
    pub fn enter() -> io::Result<Screen> {
        restore_on_panic();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let entered = execute!(io::stdout(), EnterAlternateScreen, Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match entered {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back, if it is set up: the cursor, the screen that was there, line
/// mode. Failures are ignored: there is nothing better to do on the way out.
fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = execute!(io::stdout(), Show, LeaveAlternateScreen);
    let _ = disable_raw_mode();
}

/// Installs (once) a panic hook that puts the terminal back, then runs the hook there was, so
/// that a panic's message is readable and the shell usable.
fn restore_on_panic() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            before(info);
        }));
    });
}
