//! Ratios between two systems, round by round: in each round both ran the same trial within
//! seconds of each other, so the ratio of that round's two values cancels what the machine did
//! meanwhile; the tables show the median of those per-round ratios (not the ratio of the two
//! medians) with the lowest and highest round beside it.

use std::fmt;

use crate::report::Samples;

/// The per-round ratios of a metric between two systems.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRatios {
    /// One ratio per round where both systems measured, in round order.
    pub values: Vec<f64>,
}

impl RoundRatios {
    /// `a[i] ÷ b[i]` for every round `i` where both have a value (and `b[i]` is positive).
    /// `a` and `b` hold one entry per round, `None` where that round's trial failed.
    pub fn of(a: &[Option<f64>], b: &[Option<f64>]) -> Self {
        let values = a
            .iter()
            .zip(b)
            .filter_map(|pair| match pair {
                (Some(a), Some(b)) if *b > 0.0 => Some(a / b),
                _ => None,
            })
            .collect();
        Self { values }
    }

    /// The median ratio; `None` when no round has both values.
    pub fn median(&self) -> Option<f64> {
        (!self.values.is_empty()).then(|| Samples::of(self.values.iter().copied()).median())
    }

    /// The lowest round's ratio.
    pub fn min(&self) -> Option<f64> {
        self.values.iter().copied().reduce(f64::min)
    }

    /// The highest round's ratio.
    pub fn max(&self) -> Option<f64> {
        self.values.iter().copied().reduce(f64::max)
    }
}

/// `1.25× (0.98–1.40)`: the median, then the lowest and highest round; `—` without a round.
impl fmt::Display for RoundRatios {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.median(), self.min(), self.max()) {
            (Some(median), Some(min), Some(max)) if self.values.len() > 1 => {
                write!(f, "{median:.2}× ({min:.2}–{max:.2})")
            }
            (Some(median), _, _) => write!(f, "{median:.2}×"),
            _ => f.write_str("—"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_of_per_round_ratios_not_the_ratio_of_medians() {
        // Round by round circuit is 2×, 0.5×, 2×: the median ratio is 2. The medians
        // themselves (4 and 4) would say 1.
        let a = [Some(4.0), Some(1.0), Some(8.0)];
        let b = [Some(2.0), Some(2.0), Some(4.0)];
        let r = RoundRatios::of(&a, &b);
        assert_eq!(r.values, vec![2.0, 0.5, 2.0]);
        assert_eq!(r.median(), Some(2.0));
        assert_eq!((r.min(), r.max()), (Some(0.5), Some(2.0)));
        assert_eq!(r.to_string(), "2.00× (0.50–2.00)");
    }

    #[test]
    fn rounds_where_either_failed_are_left_out() {
        let a = [Some(3.0), None, Some(1.0), Some(5.0)];
        let b = [Some(1.0), Some(1.0), None, Some(0.0)];
        let r = RoundRatios::of(&a, &b);
        assert_eq!(r.values, vec![3.0]);
        assert_eq!(r.to_string(), "3.00×");
        let none = RoundRatios::of(&[None], &[Some(1.0)]);
        assert_eq!((none.median(), none.to_string()), (None, "—".to_string()));
    }
}
