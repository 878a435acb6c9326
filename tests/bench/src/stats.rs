//! Samples of repeated measurements and how they are shown: medians (with min and max and the
//! run count), durations in adaptive units, byte counts in binary units.

use std::time::Duration;

/// Durations of repeated runs of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<Duration>,
}

impl Samples {
    pub fn new() -> Samples {
        Samples::default()
    }

    pub fn push(&mut self, value: Duration) {
        self.values.push(value);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The median (mean of the two middle values for an even count); zero when empty.
    pub fn median(&self) -> Duration {
        let mut sorted = self.values.clone();
        sorted.sort();
        match sorted.len() {
            0 => Duration::ZERO,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
        }
    }

    pub fn min(&self) -> Duration {
        self.values.iter().min().copied().unwrap_or_default()
    }

    pub fn max(&self) -> Duration {
        self.values.iter().max().copied().unwrap_or_default()
    }

    /// `median (min–max, n runs)`.
    pub fn summary(&self) -> String {
        format!(
            "{} (min {}, max {}, {} runs)",
            duration(self.median()),
            duration(self.min()),
            duration(self.max()),
            self.len()
        )
    }
}

/// The median of plain numbers (mean of the two middle values for an even count); 0 when empty.
pub fn median_f64(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// A duration in the unit that keeps three significant digits readable.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.1} µs", secs * 1e6)
    }
}

/// A byte count in binary units.
pub fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB * KIB {
        format!("{:.2} GiB", f / (KIB * KIB * KIB))
    } else if f >= KIB * KIB {
        format!("{:.4} MiB", f / (KIB * KIB))
    } else if f >= KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{n} B")
    }
}

/// `a / b` as a ratio of durations (0 when `b` is zero).
pub fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        0.0
    } else {
        a.as_secs_f64() / b.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_value_whatever_the_order() {
        let mut s = Samples::new();
        for v in [9, 1, 5, 7, 3] {
            s.push(ms(v));
        }
        assert_eq!(s.median(), ms(5));
        assert_eq!((s.min(), s.max(), s.len()), (ms(1), ms(9), 5));
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_two_middle_values() {
        let mut s = Samples::new();
        for v in [10, 2, 4, 8] {
            s.push(ms(v));
        }
        assert_eq!(s.median(), ms(6));
        assert_eq!(median_f64(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(Samples::new().median(), Duration::ZERO);
    }

    #[test]
    fn sizes_and_durations_read_in_their_natural_units() {
        assert_eq!(bytes((1 << 20) + (64 << 10)), "1.0625 MiB");
        assert_eq!(bytes(2 << 30), "2.00 GiB");
        assert_eq!(duration(ms(1500)), "1.50 s");
        assert_eq!(duration(Duration::from_micros(250)), "250.0 µs");
    }
}
