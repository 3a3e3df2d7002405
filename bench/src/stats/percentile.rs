//! Percentiles by the nearest-rank method (the value below which p% of samples fall, always an
//! observed sample, no interpolation), and the summaries the reports print.

use serde::{Deserialize, Serialize};

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of an ascending slice; `None` if empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Median of unsorted values (the mean of the two middle ones for an even count), used to
/// combine repeated runs.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

/// Distribution summary of one measure (milliseconds unless the field name says otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// Summarises values (sorted in place); `None` when there are none.
    pub fn of(values: &mut [f64]) -> Option<Summary> {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        Some(Summary {
            n,
            p50: percentile(values, 50.0)?,
            p95: percentile(values, 95.0)?,
            p99: percentile(values, 99.0)?,
            max: *values.last()?,
            mean: values.iter().sum::<f64>() / n as f64,
        })
    }

    /// Summarises microsecond samples into milliseconds (the latency sample format: 4 bytes each,
    /// so millions of frames fit comfortably).
    pub fn of_micros_as_ms(values: &mut [u32]) -> Option<Summary> {
        values.sort_unstable();
        let n = values.len();
        let ms = |us: u32| f64::from(us) / 1000.0;
        let at = |p: f64| {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            ms(values[rank.clamp(1, n) - 1])
        };
        if n == 0 {
            return None;
        }
        Some(Summary {
            n,
            p50: at(50.0),
            p95: at(95.0),
            p99: at(99.0),
            max: ms(values[n - 1]),
            mean: values.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64 / 1000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 1.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 51.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_sorts_and_reports_tail_and_mean() {
        let mut v = vec![5.0, 1.0, 4.0, 2.0, 3.0, 100.0, 6.0, 7.0, 8.0, 9.0];
        let s = Summary::of(&mut v).unwrap();
        assert_eq!((s.n, s.p50, s.p95, s.p99, s.max), (10, 5.0, 100.0, 100.0, 100.0));
        assert!((s.mean - 14.5).abs() < 1e-9);
        assert!(Summary::of(&mut []).is_none());
    }

    #[test]
    fn micros_summary_matches_the_float_one() {
        let mut us: Vec<u32> = (0..1000).rev().map(|i| i * 1000 + 500).collect();
        let mut ms: Vec<f64> = us.iter().map(|&u| f64::from(u) / 1000.0).collect();
        let (a, b) = (Summary::of_micros_as_ms(&mut us).unwrap(), Summary::of(&mut ms).unwrap());
        assert_eq!((a.n, a.p50, a.p95, a.p99, a.max), (b.n, b.p50, b.p95, b.p99, b.max));
        assert!((a.mean - b.mean).abs() < 1e-6);
        assert_eq!(a.p50, 499.5);
        assert!(Summary::of_micros_as_ms(&mut []).is_none());
    }

    #[test]
    fn median_of_runs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN]), None);
    }
}
