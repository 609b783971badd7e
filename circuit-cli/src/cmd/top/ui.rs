//! What the person at `circuit top` chose: which pane has the focus, how each pane is sorted,
//! how far each is scrolled; and what each key does to that. Pure: keys in, state and an
//! [`Action`] out.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::sort::{Pane, Sort, SortKey};

/// Rows a page key moves.
const PAGE: usize = 10;

/// What the event loop does after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Draw again (the state changed, or may have).
    Redraw,
    /// Leave `circuit top`.
    Quit,
}

/// The state of the screen that is not data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ui {
    /// The pane the sort and scroll keys act on.
    pub focus: Pane,
    /// Each pane's order, by [`Pane::index`].
    sorts: [Sort; 3],
    /// Each pane's first row shown, by [`Pane::index`]; kept within the rows by [`Ui::clamp`].
    scroll: [usize; 3],
}

impl Default for Ui {
    /// The workers pane has the focus; every pane is sorted by name.
    fn default() -> Self {
        Self {
            focus: Pane::Workers,
            sorts: [Sort::NAME; 3],
            scroll: [0; 3],
        }
    }
}

impl Ui {
    /// Every pane sorted by `key` where `key` means something for it, by name elsewhere.
    pub fn sorted_by(key: SortKey) -> Self {
        let mut ui = Ui::default();
        for pane in Pane::ALL {
            if pane.sorts_by(key) {
                ui.sorts[pane.index()] = Sort {
                    key,
                    reverse: false,
                };
            }
        }
        ui
    }

    /// How `pane` is sorted.
    pub fn sort(&self, pane: Pane) -> Sort {
        self.sorts[pane.index()]
    }

    /// The first row of `pane` to show.
    pub fn scroll(&self, pane: Pane) -> usize {
        self.scroll[pane.index()]
    }

    /// Keeps each pane's scroll within `most`, the furthest each can go (rows less those that
    /// fit), as the last drawing found it.
    pub fn clamp(&mut self, most: [usize; 3]) {
        for (scroll, most) in self.scroll.iter_mut().zip(most) {
            *scroll = (*scroll).min(most);
        }
    }

    /// Applies a key press.
    pub fn key(&mut self, key: KeyEvent) -> Action {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => return Action::Quit,
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Tab => self.focus = next(self.focus, 1),
            KeyCode::BackTab => self.focus = next(self.focus, 2),
            KeyCode::Up | KeyCode::Char('k') => self.scroll_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll_by(1),
            KeyCode::PageUp => self.scroll_by(-(PAGE as isize)),
            KeyCode::PageDown | KeyCode::Char(' ') => self.scroll_by(PAGE as isize),
            KeyCode::Home | KeyCode::Char('g') => self.scroll[self.focus.index()] = 0,
            // Past the end; the next drawing brings it back to the last page.
            KeyCode::End | KeyCode::Char('G') => self.scroll[self.focus.index()] = usize::MAX,
            KeyCode::Char('n') => self.sort_by(SortKey::Name),
            KeyCode::Char('c') => self.sort_by(SortKey::Cpu),
            KeyCode::Char('m') => self.sort_by(SortKey::Mem),
            KeyCode::Char('r') => self.sort_by(SortKey::Restarts),
            _ => {}
        }
        Action::Redraw
    }

    fn scroll_by(&mut self, rows: isize) {
        let scroll = &mut self.scroll[self.focus.index()];
        *scroll = scroll.saturating_add_signed(rows);
    }

    /// Sorts the focused pane by `key`; by the same key again, the other way round. A key the
    /// pane has no meaning for does nothing.
    fn sort_by(&mut self, key: SortKey) {
        if !self.focus.sorts_by(key) {
            return;
        }
        let sort = &mut self.sorts[self.focus.index()];
        if sort.key == key {
            sort.reverse = !sort.reverse;
        } else {
            *sort = Sort {
                key,
                reverse: false,
            };
        }
        self.scroll[self.focus.index()] = 0;
    }
}

/// The pane `steps` after `pane`, going round.
fn next(pane: Pane, steps: usize) -> Pane {
    Pane::ALL[(pane.index() + steps) % Pane::ALL.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(ui: &mut Ui, code: KeyCode) -> Action {
        ui.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn q_esc_and_ctrl_c_quit() {
        let mut ui = Ui::default();
        assert_eq!(press(&mut ui, KeyCode::Char('q')), Action::Quit);
        assert_eq!(press(&mut ui, KeyCode::Esc), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(ui.key(ctrl_c), Action::Quit);
        assert_eq!(ui, Ui::default(), "quitting changes nothing");
    }

    #[test]
    fn sort_keys_act_on_the_focused_pane_and_again_reverse() {
        let mut ui = Ui::default();
        assert_eq!(press(&mut ui, KeyCode::Char('c')), Action::Redraw);
        let cpu = Sort {
            key: SortKey::Cpu,
            reverse: false,
        };
        assert_eq!(ui.sort(Pane::Workers), cpu);
        assert_eq!(ui.sort(Pane::Nodes), Sort::NAME);
        press(&mut ui, KeyCode::Char('c'));
        assert!(ui.sort(Pane::Workers).reverse);
        press(&mut ui, KeyCode::Char('r'));
        assert_eq!(ui.sort(Pane::Workers).key, SortKey::Restarts);

        press(&mut ui, KeyCode::Tab);
        assert_eq!(ui.focus, Pane::Channels);
        press(&mut ui, KeyCode::Char('r'));
        assert_eq!(
            ui.sort(Pane::Channels),
            Sort::NAME,
            "no restarts for channels"
        );
        press(&mut ui, KeyCode::Char('m'));
        assert_eq!(ui.sort(Pane::Channels).key, SortKey::Mem);
        press(&mut ui, KeyCode::Tab);
        assert_eq!(ui.focus, Pane::Nodes);
        press(&mut ui, KeyCode::BackTab);
        assert_eq!(ui.focus, Pane::Channels);
    }

    #[test]
    fn a_start_order_applies_where_it_means_something() {
        let ui = Ui::sorted_by(SortKey::Restarts);
        assert_eq!(ui.sort(Pane::Workers).key, SortKey::Restarts);
        assert_eq!(ui.sort(Pane::Nodes), Sort::NAME);
        assert_eq!(Ui::sorted_by(SortKey::Name), Ui::default());
        assert_eq!(
            Ui::sorted_by(SortKey::Cpu).sort(Pane::Channels).key,
            SortKey::Cpu
        );
    }

    #[test]
    fn scrolling_stays_within_the_rows() {
        let mut ui = Ui::default();
        press(&mut ui, KeyCode::Up);
        assert_eq!(ui.scroll(Pane::Workers), 0);
        press(&mut ui, KeyCode::PageDown);
        press(&mut ui, KeyCode::Down);
        assert_eq!(ui.scroll(Pane::Workers), 11);
        ui.clamp([0, 4, 0]);
        assert_eq!(ui.scroll(Pane::Workers), 4);
        press(&mut ui, KeyCode::End);
        ui.clamp([0, 7, 0]);
        assert_eq!(ui.scroll(Pane::Workers), 7);
        press(&mut ui, KeyCode::Char('c'));
        assert_eq!(ui.scroll(Pane::Workers), 0, "a new order starts at the top");
        assert_eq!(ui.scroll(Pane::Nodes), 0);
    }
}
