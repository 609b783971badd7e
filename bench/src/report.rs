//! What a benchmark prints: named samples summarised as median, min and max in a Markdown table.

use std::fmt::Write as _;

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

/// A Markdown table with one row per metric: metric | median | min | max | per trial. The
/// last column keeps the order, so a trend across trials (a leak, a slowdown) stays visible.
pub fn markdown(rows: &[Samples]) -> String {
    let mut out =
        String::from("| metric | median | min | max | per trial |\n|---|---:|---:|---:|---|\n");
    for row in rows {
        let each: Vec<String> = row.values.iter().map(|v| row.fmt(*v)).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            row.metric,
            row.fmt(row.median()),
            row.fmt(row.min()),
            row.fmt(row.max()),
            each.join(", ")
        );
    }
    out
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
        assert!(markdown(&[s]).contains("| x | 3.5 | 1.0 | 5.0 | 5.0, 1.0, 3.0, 4.0 |"));
    }
}
