//! `docker ps`-style tables that fit the terminal: columns padded to their widest cell by
//! display width (CJK and emoji count two, a tab shows as a space), the widest columns cut with
//! `…` when a row would not fit (`--wide` shows everything), and states in colour on a terminal.

use std::io::{self, Write};

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::style::{self, Style};

/// Spaces between two columns.
const GAP: usize = 3;

/// No column is cut narrower than this (or its title, if wider).
const MIN_COLUMN: usize = 8;

/// A table with an upper-case header and left-aligned columns padded to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// The column whose cells are worker or node states, coloured on a terminal.
    states: Option<usize>,
}

impl Table {
    /// A table with these column titles (shown in capitals).
    pub fn new<S: AsRef<str>>(header: &[S]) -> Self {
        Self {
            header: header.iter().map(|h| h.as_ref().to_uppercase()).collect(),
            rows: Vec::new(),
            states: None,
        }
    }

    /// Marks column `index` as holding states (`running`, `failed`, `alive`, …), which are
    /// coloured when the table goes to a terminal.
    pub fn states(mut self, index: usize) -> Self {
        self.states = Some(index);
        self
    }

    /// Adds a row; missing cells are blank, extra cells are dropped. Control characters show
    /// as a space (a tab) or `�`, so a cell cannot move the cursor or retitle the terminal.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.iter().map(|c| clean(c)).collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as this process's stdout wants it (see [`Style::current`]).
    pub fn render(&self) -> String {
        self.render_with(&Style::current())
    }

    /// The table as text for `style`: one line per row, each ending in a newline, no trailing
    /// spaces.
    pub fn render_with(&self, style: &Style) -> String {
        let widths = self.fit(style.columns);
        let mut out = String::new();
        for (r, row) in std::iter::once(&self.header).chain(&self.rows).enumerate() {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let text = cut(cell, widths[i]);
                let shown = match self.states {
                    Some(s) if s == i && r > 0 && style.colour => style::paint_state(&text),
                    _ => text.clone(),
                };
                line.push_str(&shown);
                if i + 1 < row.len() {
                    let pad = widths[i] - width(&text) + GAP;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Writes the table to stdout.
    pub fn print(&self) -> io::Result<()> {
        io::stdout().lock().write_all(self.render().as_bytes())
    }

    /// Each column's width: its widest cell, then, while a line would be wider than `columns`,
    /// the widest column one narrower (never below its title or [`MIN_COLUMN`]).
    fn fit(&self, columns: Option<usize>) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let Some(columns) = columns else {
            return widths;
        };
        let floor: Vec<usize> = self
            .header
            .iter()
            .map(|h| width(h).max(MIN_COLUMN))
            .collect();
        let gaps = GAP * widths.len().saturating_sub(1);
        while widths.iter().sum::<usize>() + gaps > columns {
            let widest = (0..widths.len())
                .filter(|&i| widths[i] > floor[i])
                .max_by_key(|&i| (widths[i], i));
            match widest {
                Some(i) => widths[i] -= 1,
                None => break,
            }
        }
        widths
    }
}

/// Display width of a cell: wide characters count two.
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// `s` cut to at most `max` columns of display width, ending in `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// A cell without control characters: a tab or newline shows as a space, others as `�`.
pub(super) fn clean(cell: &str) -> String {
    if !cell.chars().any(char::is_control) {
        return cell.to_string();
    }
    cell.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(columns: Option<usize>) -> Style {
        Style {
            columns,
            colour: false,
        }
    }

    #[test]
    fn columns_are_aligned_by_their_widest_cell() {
        let mut t = Table::new(&["name", "state", "pid"]);
        t.row(vec!["web".into(), "running".into(), "4242".into()]);
        t.row(vec!["a-long-name".into(), "exited".into(), "-".into()]);
        t.row(vec!["ünï".into(), "failed".into()]);
        let want = "\
NAME          STATE     PID
web           running   4242
a-long-name   exited    -
ünï           failed
";
        assert_eq!(t.render_with(&plain(None)), want);
        assert_eq!(Table::new(&["a", "b"]).render_with(&plain(None)), "A   B\n");
    }

    #[test]
    fn wide_characters_count_two_columns_and_tabs_one() {
        let mut t = Table::new(&["name", "pid"]);
        t.row(vec!["日本語".into(), "1".into()]);
        t.row(vec!["🚀x".into(), "2".into()]);
        t.row(vec!["a\tb".into(), "3".into()]);
        let want = "\
NAME     PID
日本語   1
🚀x      2
a b      3
";
        assert_eq!(t.render_with(&plain(None)), want);
    }

    #[test]
    fn a_table_wider_than_the_terminal_cuts_its_widest_columns() {
        let mut t = Table::new(&["name", "state", "command"]);
        t.row(vec![
            "api-1".into(),
            "running".into(),
            "python3 -m http.server --bind 127.0.0.1 8080".into(),
        ]);
        let text = t.render_with(&plain(Some(40)));
        for line in text.lines() {
            assert!(width(line) <= 40, "{line:?} is wider than 40");
        }
        assert!(text.contains("python3 -m http.serve…"), "{text}");
        assert!(text.contains("api-1   running"), "{text}");
        // Too narrow for even the titles: columns stop at their floor, nothing panics.
        let narrow = t.render_with(&plain(Some(5)));
        assert_eq!(
            narrow,
            "NAME    STATE     COMMAND\napi-1   running   python3…\n"
        );
        // Unlimited: the whole command.
        assert!(t
            .render_with(&plain(None))
            .contains("--bind 127.0.0.1 8080"));
    }

    #[test]
    fn cutting_counts_display_width() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        assert_eq!(cut("日本語です", 5), "日本…");
        assert_eq!(
            width(&cut("日本語です", 6)),
            5,
            "a wide character does not fit half"
        );
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        let mut t = Table::new(&["name"]);
        t.row(vec!["evil\u{1b}]0;owned\u{7}".into()]);
        let text = t.render_with(&plain(None));
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
    }

    #[test]
    fn states_are_coloured_only_when_asked_and_do_not_shift_columns() {
        let mut t = Table::new(&["state", "pid"]).states(0);
        t.row(vec!["running".into(), "1".into()]);
        t.row(vec!["failed".into(), "2".into()]);
        let colour = Style {
            columns: None,
            colour: true,
        };
        let text = t.render_with(&colour);
        assert!(text.contains("\u{1b}[32mrunning\u{1b}[0m   1"), "{text:?}");
        assert!(text.contains("\u{1b}[31mfailed\u{1b}[0m    2"), "{text:?}");
        assert!(
            text.starts_with("STATE     PID\n"),
            "the title is not coloured"
        );
        assert!(!t.render_with(&plain(None)).contains('\u{1b}'));
    }
}
