//! The screen of `circuit top`, drawn from the [`Model`] and the [`Ui`] state alone: a header
//! with the mesh in one line, the keys, the nodes, workers and channels panes, and a status
//! line (when the figures are from, or why refreshing fails). A pure function of its inputs,
//! so it is tested on ratatui's `TestBackend`.

use std::time::Duration;

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Padding, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::rows::{self, Align, Grid};
use super::snapshot::Model;
use super::sort::Pane;
use super::ui::Ui;
use crate::output;

/// Spaces between two columns.
const GAP: u16 = 2;
/// Narrowest a column that may be cut is cut to.
const MIN_FLEX: usize = 6;
/// What the keys do, under the header.
const KEYS: &str = "q quit · Tab pane · ↑↓ PgUp PgDn scroll · sort: n name, c cpu, m mem, \
                    r restarts (again: reverse)";

/// Draws the whole screen. Returns, for each pane (by [`Pane::index`]), the furthest it can
/// be scrolled at this size, for [`Ui::clamp`].
pub fn render(
    frame: &mut Frame,
    model: &Model,
    ui: &Ui,
    every: Duration,
    now_ms: u64,
) -> [usize; 3] {
    let area = frame.area();
    let grids = model
        .snapshot
        .as_ref()
        .map(|s| Pane::ALL.map(|pane| rows::grid(pane, s, ui.sort(pane))));
    let count = |pane: Pane| grids.as_ref().map_or(0, |g| g[pane.index()].rows.len());
    // The status line wraps, up to 3 lines (an error with its hint can be long).
    let status_line = status_line(model, every, now_ms);
    let status_height = u16::try_from(status_line.width().div_ceil(usize::from(area.width.max(1))))
        .unwrap_or(u16::MAX)
        .clamp(1, 3);
    // The side panes take what their rows need, up to a third of the room each (3 lines:
    // the borders and the column titles); the workers pane gets the rest.
    let room = area.height.saturating_sub(2 + status_height);
    let side = |rows: usize| {
        let most = (room / 3).max(4);
        u16::try_from(rows + 3).unwrap_or(u16::MAX).min(most)
    };
    let [header, keys, nodes, workers, chans, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(side(count(Pane::Nodes))),
        Constraint::Min(3),
        Constraint::Length(side(count(Pane::Channels))),
        Constraint::Length(status_height),
    ])
    .areas(area);

    frame.render_widget(Paragraph::new(header_line(model, every)), header);
    frame.render_widget(
        Paragraph::new(KEYS).style(Style::new().fg(Color::DarkGray)),
        keys,
    );
    let mut most = [0; 3];
    for (pane, rect) in [
        (Pane::Nodes, nodes),
        (Pane::Workers, workers),
        (Pane::Channels, chans),
    ] {
        let grid = grids.as_ref().map(|g| &g[pane.index()]);
        most[pane.index()] = draw_pane(frame, rect, pane, grid, ui);
    }
    frame.render_widget(
        Paragraph::new(status_line).wrap(Wrap { trim: false }),
        status,
    );
    most
}

/// `circuit top · <the mesh in one line> · via h1 · every 1s`.
fn header_line(model: &Model, every: Duration) -> Line<'static> {
    let mut spans = vec![Span::styled(
        "circuit top",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    match &model.snapshot {
        Some(snapshot) => {
            spans.push(Span::raw(format!(" · {}", rows::summary(snapshot))));
            if let Some(via) = snapshot.via() {
                spans.push(Span::raw(format!(" · via {via}")));
            }
        }
        None => spans.push(Span::raw(" · connecting…")),
    }
    spans.push(Span::raw(format!(
        " · every {}",
        humantime::format_duration(every)
    )));
    Line::from(spans)
}

/// When the figures are from; or, while refreshing fails, why (in red), since when, and that
/// it goes on trying.
fn status_line(model: &Model, every: Duration, now_ms: u64) -> Line<'static> {
    let every = humantime::format_duration(every);
    match (&model.failure, &model.snapshot) {
        (Some(failure), snapshot) => {
            let mut text = format!(
                "error: {} — retrying every {every} (failing for {})",
                failure.message,
                output::ago(failure.at_ms, now_ms)
            );
            if let Some(s) = snapshot {
                text.push_str(&format!("; figures from {}", clock(s.at_ms)));
            }
            Line::styled(text, Style::new().fg(Color::Red))
        }
        (None, Some(s)) => Line::styled(
            format!("updated {} UTC", clock(s.at_ms)),
            Style::new().fg(Color::DarkGray),
        ),
        (None, None) => Line::styled("connecting to circuitd…", Style::new().fg(Color::DarkGray)),
    }
}

/// The time of day of a timestamp, `12:00:01` (UTC).
fn clock(ms: u64) -> String {
    let stamp = output::timestamp(ms);
    stamp.get(11..19).unwrap_or(&stamp).to_string()
}

/// Draws one pane in `area`: its border and title, the column titles, the rows from its
/// scroll position. Returns how far it can be scrolled.
fn draw_pane(frame: &mut Frame, area: Rect, pane: Pane, grid: Option<&Grid>, ui: &Ui) -> usize {
    let focused = ui.focus == pane;
    let sort = ui.sort(pane);
    let total = grid.map_or(0, |g| g.rows.len());
    let mut title = format!(" {} {total} · by {}", pane.title(), sort.key.label(pane));
    if sort.reverse {
        title.push_str(", reversed");
    }
    title.push(' ');
    let (border, title_style) = if focused {
        let style = Style::new().fg(Color::Cyan);
        (style, style.add_modifier(Modifier::BOLD))
    } else {
        (Style::new().fg(Color::DarkGray), Style::new())
    };
    let mut block = Block::bordered()
        .padding(Padding::horizontal(1))
        .border_style(border)
        .title(Line::styled(title, title_style));
    let inner = block.inner(area);
    let Some(grid) = grid else {
        frame.render_widget(block, area);
        return 0;
    };
    let fits = usize::from(inner.height.saturating_sub(1));
    let most = total.saturating_sub(fits);
    let first = ui.scroll(pane).min(most);
    let shown = &grid.rows[first..(first + fits).min(total)];
    if shown.len() < total {
        let range = format!(" {}–{} of {total} ", first + 1, first + shown.len());
        block = block.title_bottom(Line::from(range).alignment(Alignment::Right));
    }
    let widths = fit(grid, usize::from(inner.width));
    let header = Row::new(grid.columns.iter().zip(&widths).map(|(column, &width)| {
        cell(column.title, width, column.align).style(Style::new().add_modifier(Modifier::BOLD))
    }));
    let rows = shown.iter().map(|row| {
        Row::new(
            row.iter()
                .zip(grid.columns)
                .zip(&widths)
                .map(|((text, column), &width)| {
                    let cell = cell(text, width, column.align);
                    if column.title == "STATE" {
                        cell.style(state_style(text))
                    } else {
                        cell
                    }
                }),
        )
    });
    let constraints = widths
        .iter()
        .map(|&w| Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX)));
    let table = Table::new(rows, constraints)
        .header(header)
        .column_spacing(GAP)
        .block(block);
    frame.render_widget(table, area);
    most
}

/// A state that needs a look in red (failed, lost, dead), one in passing in yellow.
fn state_style(state: &str) -> Style {
    match state {
        "failed" | "lost" | "dead" => Style::new().fg(Color::Red),
        "backoff" | "suspect" | "stopping" | "starting" | "closed" => {
            Style::new().fg(Color::Yellow)
        }
        _ => Style::new(),
    }
}

/// A cell cut to `width` (ending in `…` when cut) and aligned.
fn cell(text: &str, width: usize, align: Align) -> Cell<'static> {
    let line = Line::from(output::truncate(text, width));
    Cell::from(match align {
        Align::Left => line,
        Align::Right => line.alignment(Alignment::Right),
    })
}

/// Column widths for `grid` in `room` columns of the screen: each as wide as its widest cell;
/// when that is too wide, the columns that may be cut lose width, widest first, down to
/// [`MIN_FLEX`]; if it still does not fit, columns are left out from the right (the widths
/// returned are those of the columns shown, from the left).
fn fit(grid: &Grid, room: usize) -> Vec<usize> {
    let chars = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = grid
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            grid.rows
                .iter()
                .map(|row| row.get(i).map_or(0, |c| chars(c)))
                .fold(chars(column.title), usize::max)
        })
        .collect();
    let total = |widths: &[usize]| {
        widths.iter().sum::<usize>() + usize::from(GAP) * widths.len().saturating_sub(1)
    };
    let mut excess = total(&widths).saturating_sub(room);
    while excess > 0 {
        let widest = (0..widths.len())
            .filter(|&i| grid.columns[i].flex && widths[i] > MIN_FLEX)
            .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)));
        let Some(i) = widest else { break };
        widths[i] -= 1;
        excess -= 1;
    }
    while widths.len() > 1 && total(&widths) > room {
        widths.pop();
    }
    widths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::fixtures::{chan, node, worker};
    use crate::cmd::top::snapshot::Sample;
    use circuit_sdk::proto::{NodeState, WorkerInfo, WorkerState, WorkerUsage};
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::Terminal;

    const EVERY: Duration = Duration::from_secs(1);
    const NOW: u64 = 131_000;

    fn busy(name: &str, node: &str, cpu: f64, rss: u64) -> WorkerInfo {
        let mut w = worker(name, node, WorkerState::Running);
        w.pid = Some(4000 + u32::try_from(name.len()).unwrap());
        w.usage = Some(WorkerUsage {
            cpu_seconds: 0.0,
            cpu_percent: Some(cpu),
            rss_bytes: rss,
            group_cpu_percent: Some(cpu),
            group_rss_bytes: rss,
            group_processes: 1,
            sampled_at_ms: NOW,
        });
        w
    }

    /// Two nodes; an idle worker on each and a hog on b; one channel.
    fn model() -> Model {
        let mut a = node("a1", NodeState::Alive);
        (a.is_self, a.load, a.workers) = (true, 0.2, 1);
        (a.mem_total_bytes, a.mem_available_bytes) = (8 << 30, 6 << 30);
        a.channels = vec!["jobs".into()];
        let mut b = node("b2", NodeState::Alive);
        (b.load, b.workers) = (1.0, 2);
        let sample = Sample {
            nodes: vec![b, a],
            workers: vec![
                busy("a-idle", "a1", 0.0, 3 << 20),
                busy("b-idle", "b2", 0.1, 5 << 20),
                busy("hog", "b2", 98.7, 2 << 20),
            ],
            chans: vec![chan("jobs", 16, "a1")],
        };
        let mut model = Model::default();
        model.update(sample, NOW, Duration::from_secs(1));
        model
    }

    fn draw(model: &Model, ui: &Ui, width: u16, height: u16) -> (Vec<String>, [usize; 3]) {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
        let mut most = [0; 3];
        terminal
            .draw(|frame| most = render(frame, model, ui, EVERY, NOW))
            .expect("draw");
        let screen = lines(terminal.backend().buffer());
        // Shown when a test fails.
        eprintln!("{}", screen.join("\n"));
        (screen, most)
    }

    fn lines(buffer: &Buffer) -> Vec<String> {
        let area = buffer.area;
        (0..area.height)
            .map(|y| {
                let line: String = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
                line.trim_end().to_string()
            })
            .collect()
    }

    /// The rows of the pane titled `title`: the lines after its column titles, up to its
    /// bottom border.
    fn pane_rows<'a>(screen: &'a [String], title: &str) -> Vec<&'a str> {
        let top = screen
            .iter()
            .position(|l| l.starts_with(&format!("┌ {title} ")))
            .unwrap_or_else(|| panic!("no {title} pane in\n{}", screen.join("\n")));
        screen[top + 2..]
            .iter()
            .take_while(|l| !l.starts_with('└'))
            .map(|l| l.trim_start_matches('│').trim_end_matches('│').trim())
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn press(ui: &mut Ui, c: char) {
        ui.key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }

    #[test]
    fn the_screen_shows_the_mesh_the_panes_and_when_it_was_updated() {
        let (screen, _) = draw(&model(), &Ui::default(), 100, 20);
        assert_eq!(
            screen[0],
            "circuit top · 2 nodes (2 alive) · 3 workers (3 running) · 1 channel · via a1 · every 1s"
        );
        assert!(screen[1].starts_with("q quit · Tab pane"), "{}", screen[1]);
        assert_eq!(
            pane_rows(&screen, "Nodes 2"),
            [
                "a1*   alive  10.0.0.1:7711   0.2  2.0G/8.0G        1         1",
                "b2    alive  10.0.0.2:7711   1.0          -        2         0",
            ]
        );
        assert_eq!(
            pane_rows(&screen, "Workers 3")[0],
            "a1    a-idle  running  4006   0.0%  3.0M         0   2m10s  -"
        );
        assert_eq!(
            pane_rows(&screen, "Channels 1"),
            ["jobs  a1        0/16     -      -          0          0  open"]
        );
        assert_eq!(screen[19], "updated 00:02:11 UTC");
    }

    #[test]
    fn sorted_by_cpu_the_hog_comes_first() {
        let model = model();
        let mut ui = Ui::default();
        let first = |ui: &Ui| {
            let (screen, _) = draw(&model, ui, 100, 20);
            pane_rows(&screen, "Workers 3").first().map(|row| {
                row.split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string()
            })
        };
        assert_eq!(first(&ui).as_deref(), Some("a-idle"), "by name");
        press(&mut ui, 'c');
        let (screen, _) = draw(&model, &ui, 100, 20);
        assert!(
            screen
                .iter()
                .any(|l| l.starts_with("┌ Workers 3 · by cpu ")),
            "the title names the order"
        );
        assert_eq!(first(&ui).as_deref(), Some("hog"), "by cpu");
        press(&mut ui, 'c');
        assert_eq!(first(&ui).as_deref(), Some("a-idle"), "by cpu, reversed");
        press(&mut ui, 'm');
        assert_eq!(first(&ui).as_deref(), Some("b-idle"), "by memory");
    }

    #[test]
    fn a_long_name_is_cut_with_an_ellipsis() {
        let mut model = model();
        let long = "a-worker-with-a-name-much-longer-than-the-screen-has-room-for";
        let snapshot = model.snapshot.as_mut().expect("snapshot");
        snapshot.workers.push(busy(long, "a1", 1.0, 1 << 20));
        let (screen, _) = draw(&model, &Ui::default(), 80, 20);
        let rows = pane_rows(&screen, "Workers 4");
        let row = rows
            .iter()
            .find(|r| r.contains("a-worker-"))
            .expect("the long one's row");
        assert!(!row.contains(long), "{row}");
        let name = row.split_whitespace().nth(1).expect("a name");
        assert!(name.ends_with('…'), "{row}");
        assert!(long.starts_with(name.trim_end_matches('…')), "{row}");
        assert!(screen.iter().all(|l| l.chars().count() <= 80));
        // The figures are whole: only the name and the last exit give way.
        assert!(row.contains("1.0%") && row.contains("1.0M"), "{row}");
    }

    #[test]
    fn columns_that_do_not_fit_are_left_out_from_the_right() {
        let (screen, _) = draw(&model(), &Ui::default(), 50, 20);
        let header = screen
            .iter()
            .find(|l| l.starts_with("│ NODE"))
            .expect("the workers' column titles");
        assert_eq!(
            header.trim_matches('│').trim(),
            "NODE  NAME    STATE     PID    CPU   MEM"
        );
        assert_eq!(
            pane_rows(&screen, "Workers 3")[2],
            "b2    hog     running  4003  98.7%  2.0M"
        );
        assert!(screen.iter().all(|l| l.chars().count() <= 50));
    }

    #[test]
    fn rows_that_do_not_fit_scroll_and_say_which_are_shown() {
        let mut model = model();
        let snapshot = model.snapshot.as_mut().expect("snapshot");
        snapshot.workers = (0..40)
            .map(|i| busy(&format!("w{i:02}"), "a1", 0.0, 1 << 20))
            .collect();
        let mut ui = Ui::default();
        let (screen, most) = draw(&model, &ui, 100, 20);
        let rows = pane_rows(&screen, "Workers 40");
        let fits = rows.len();
        assert!(rows[0].contains("w00"), "{rows:?}");
        assert_eq!(most, [0, 40 - fits, 0]);
        let bottom = screen
            .iter()
            .find(|l| l.starts_with('└') && l.contains(" of 40 "))
            .expect("a range in the bottom border");
        assert!(bottom.contains(&format!(" 1–{fits} of 40 ")), "{bottom}");
        ui.key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE));
        ui.clamp(most);
        let (screen, _) = draw(&model, &ui, 100, 20);
        let rows = pane_rows(&screen, "Workers 40");
        assert!(rows.last().expect("rows").contains("w39"), "{rows:?}");
    }

    #[test]
    fn a_failed_refresh_is_shown_in_red_over_the_last_figures() {
        let mut model = model();
        model.failed(
            "cannot connect to circuitd at /run/c.sock".into(),
            NOW - 5_000,
        );
        let mut terminal = Terminal::new(TestBackend::new(120, 20)).expect("terminal");
        terminal
            .draw(|frame| {
                render(frame, &model, &Ui::default(), EVERY, NOW);
            })
            .expect("draw");
        let buffer = terminal.backend().buffer();
        let screen = lines(buffer);
        assert_eq!(
            screen[19],
            "error: cannot connect to circuitd at /run/c.sock — retrying every 1s (failing for \
             5s); figures from 00:02:11"
        );
        assert_eq!(buffer[(0, 19)].fg, Color::Red);
        assert_eq!(pane_rows(&screen, "Workers 3").len(), 3, "the figures stay");
    }

    #[test]
    fn a_long_error_wraps_onto_more_lines() {
        let mut model = model();
        let socket = format!("/tmp/{}/circuitd.sock", "x".repeat(60));
        model.failed(format!("cannot connect to circuitd at {socket}"), NOW);
        let (screen, _) = draw(&model, &Ui::default(), 80, 20);
        let bottom = screen[17..].join("");
        assert!(screen[17].starts_with("error: cannot connect"), "{bottom}");
        assert!(bottom.contains("retrying every 1s"), "{bottom}");
        assert!(screen[16].starts_with('└'), "the panes make room");
    }

    #[test]
    fn before_the_first_refresh_the_panes_are_empty() {
        let (screen, most) = draw(&Model::default(), &Ui::default(), 80, 12);
        assert_eq!(screen[0], "circuit top · connecting… · every 1s");
        assert_eq!(screen[11], "connecting to circuitd…");
        assert!(screen
            .iter()
            .any(|l| l.starts_with("┌ Workers 0 · by name ")));
        assert_eq!(most, [0; 3]);
    }

    #[test]
    fn the_focused_pane_is_drawn_in_colour() {
        let model = model();
        let mut ui = Ui::default();
        let border_colour = |ui: &Ui, title: &str| {
            let mut terminal = Terminal::new(TestBackend::new(100, 20)).expect("terminal");
            terminal
                .draw(|frame| {
                    render(frame, &model, ui, EVERY, NOW);
                })
                .expect("draw");
            let buffer = terminal.backend().buffer();
            let y = lines(buffer)
                .iter()
                .position(|l| l.starts_with(&format!("┌ {title}")))
                .expect("pane");
            buffer[(0, u16::try_from(y).unwrap())].fg
        };
        assert_eq!(border_colour(&ui, "Workers"), Color::Cyan);
        assert_eq!(border_colour(&ui, "Nodes"), Color::DarkGray);
        ui.key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(border_colour(&ui, "Channels"), Color::Cyan);
        assert_eq!(border_colour(&ui, "Workers"), Color::DarkGray);
    }
}
