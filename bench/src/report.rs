//! What a benchmark prints: [`Table`], the one table type every benchmark prints its results
//! with (a title, a one-line caption, columns with their alignment, rows, notes), the
//! [`Samples`] of a metric over trials, and the number formats the tables share. What the
//! tables measure is explained in BENCHMARKS.md, not here.

use std::fmt;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// One Markdown table: `#### title`, its caption, the header row and its rule, the rows, then
/// any notes as paragraphs.
#[derive(Debug, Clone)]
pub struct Table {
    title: String,
    caption: String,
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    /// A table with no columns yet.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            caption: String::new(),
            columns: Vec::new(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The one line printed between the title and the table.
    pub fn caption(mut self, caption: impl Into<String>) -> Self {
        self.caption = caption.into();
        self
    }

    /// Adds a column.
    pub fn column(mut self, header: impl Into<String>, align: Align) -> Self {
        self.columns.push((header.into(), align));
        self
    }

    /// Adds a left-aligned (text) column.
    pub fn left(self, header: impl Into<String>) -> Self {
        self.column(header, Align::Left)
    }

    /// Adds a right-aligned (number) column.
    pub fn right(self, header: impl Into<String>) -> Self {
        self.column(header, Align::Right)
    }

    /// Adds a row, one cell per column; a `|` in a cell is printed as `/`.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let cells: Vec<String> = cells
            .into_iter()
            .map(|c| c.into().replace('|', "/"))
            .collect();
        assert_eq!(
            cells.len(),
            self.columns.len(),
            "a row of table {:?} has {} cells for {} columns",
            self.title,
            cells.len(),
            self.columns.len()
        );
        self.rows.push(cells);
    }

    /// Adds a paragraph printed after the table (a count, a failure, a verdict).
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// True when it has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "#### {}\n", self.title)?;
        if !self.caption.is_empty() {
            writeln!(f, "{}\n", self.caption)?;
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &mut dyn Iterator<Item = &str>| {
            f.write_str("|")?;
            for cell in cells {
                write!(f, " {cell} |")?;
            }
            writeln!(f)
        };
        line(f, &mut self.columns.iter().map(|(h, _)| h.as_str()))?;
        f.write_str("|")?;
        for (_, align) in &self.columns {
            f.write_str(match align {
                Align::Left => "---|",
                Align::Right => "---:|",
            })?;
        }
        writeln!(f)?;
        for row in &self.rows {
            line(f, &mut row.iter().map(String::as_str))?;
        }
        for note in &self.notes {
            writeln!(f, "\n{note}")?;
        }
        writeln!(f)
    }
}

/// The values one metric took, one per trial.
#[derive(Debug, Clone)]
pub struct Samples {
    /// What was measured, with its unit (`spawns/s`, `RSS (MiB)`).
    pub metric: String,
    /// Digits after the decimal point when printed.
    pub decimals: usize,
    /// One value per trial, in trial order.
    pub values: Vec<f64>,
}

impl Samples {
    /// An empty metric.
    pub fn new(metric: impl Into<String>, decimals: usize) -> Self {
        Self {
            metric: metric.into(),
            decimals,
            values: Vec::new(),
        }
    }

    /// Unnamed samples of `values`, for a median or a spread.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut s = Self::new("", 0);
        s.values.extend(values);
        s
    }

    /// Records one trial's value.
    pub fn push(&mut self, value: f64) {
        self.values.push(value);
    }

    /// The median (mean of the middle two for an even count); NaN when empty.
    pub fn median(&self) -> f64 {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    /// The smallest value; NaN when empty.
    pub fn min(&self) -> f64 {
        self.values
            .iter()
            .copied()
            .reduce(f64::min)
            .unwrap_or(f64::NAN)
    }

    /// The largest value; NaN when empty.
    pub fn max(&self) -> f64 {
        self.values
            .iter()
            .copied()
            .reduce(f64::max)
            .unwrap_or(f64::NAN)
    }

    fn fmt(&self, value: f64) -> String {
        format!("{value:.*}", self.decimals)
    }
}

/// A table with one row per metric: metric | median | min | max | per trial. The last column
/// keeps the order, so a trend across trials (a leak, a slowdown) stays visible.
pub fn samples_table(title: &str, caption: &str, rows: &[Samples]) -> Table {
    let mut table = Table::new(title)
        .caption(caption)
        .left("metric")
        .right("median")
        .right("min")
        .right("max")
        .left("per trial");
    for row in rows {
        let each: Vec<String> = row.values.iter().map(|v| row.fmt(*v)).collect();
        table.row([
            row.metric.clone(),
            row.fmt(row.median()),
            row.fmt(row.min()),
            row.fmt(row.max()),
            each.join(", "),
        ]);
    }
    table
}

/// A payload size as the tables print it: `16 B`, `4 KiB`.
pub fn size_label(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// A rate as the tables print it: `1.23M`, `812k`, `5.4k`, `950`.
pub fn fmt_rate(rate: f64) -> String {
    match rate {
        r if r >= 1e6 => format!("{:.2}M", r / 1e6),
        r if r >= 1e4 => format!("{:.0}k", r / 1e3),
        r if r >= 1e3 => format!("{:.1}k", r / 1e3),
        r => format!("{r:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let mut s = Samples::new("x", 1);
        assert!(s.median().is_nan());
        for v in [5.0, 1.0, 3.0] {
            s.push(v);
        }
        assert_eq!((s.median(), s.min(), s.max()), (3.0, 1.0, 5.0));
        s.push(4.0);
        assert_eq!(s.median(), 3.5);
        let table = samples_table("t", "", &[s]).to_string();
        assert!(table.contains("| x | 3.5 | 1.0 | 5.0 | 5.0, 1.0, 3.0, 4.0 |"));
    }

    #[test]
    fn a_table_prints_title_caption_header_rule_rows_and_notes() {
        let mut t = Table::new("Things")
            .caption("What they are.")
            .left("name")
            .right("count");
        assert!(t.is_empty());
        t.row(["a|b", "1"]);
        t.row(["c".to_string(), String::new()]);
        t.note("2 things.");
        assert_eq!(
            t.to_string(),
            "#### Things\n\nWhat they are.\n\n| name | count |\n|---|---:|\n| a/b | 1 |\n\
             | c |  |\n\n2 things.\n\n"
        );
        let bare = Table::new("Bare").left("x").to_string();
        assert_eq!(bare, "#### Bare\n\n| x |\n|---|\n\n");
    }

    #[test]
    #[should_panic(expected = "has 1 cells for 2 columns")]
    fn a_row_of_the_wrong_width_is_a_bug() {
        Table::new("t").left("a").left("b").row(["x"]);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_rate(1_234_567.0), "1.23M");
        assert_eq!(fmt_rate(812_345.0), "812k");
        assert_eq!(fmt_rate(5_432.0), "5.4k");
        assert_eq!(fmt_rate(950.0), "950");
        assert_eq!(size_label(16), "16 B");
        assert_eq!(size_label(4096), "4 KiB");
        assert_eq!(size_label(1500), "1500 B");
    }
}
