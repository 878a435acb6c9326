//! When to look at a server-side task again: soon enough that the next restore is submitted
//! moments after the last one ended, rarely enough that a long restore costs few looks (each is
//! an invocation and a query on the target).
//!
//! Pure functions over what is known of the task: how long it has run, the percent complete the
//! target reports (RDS `% complete`, native `percent_complete`), the reading before that one, and
//! how long the restore should take from its bytes and the rate this migration's earlier restores
//! of the same backup type showed ([`crate::model::status::Rates`]). The answer is a delay for the restore queue: whole
//! seconds (SQS's unit), at least [`MIN_DELAY`], at most the configured poll interval (a poll
//! interval below a second, as tests that drive time themselves set, is the delay).

use std::time::Duration;

/// The shortest delay: SQS delays are whole seconds, and a delay of 0 would look again at once.
pub const MIN_DELAY: Duration = Duration::from_secs(1);

/// What is known of a running task when deciding the next look.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    /// Since the task was submitted.
    pub elapsed: Duration,
    /// Percent complete read now, if the target reports it.
    pub percent: Option<f64>,
    /// The reading before: its percent and how long before now it was read.
    pub previous: Option<(f64, Duration)>,
    /// How long the restore should take ([`crate::model::status::Rates::expected`]).
    pub expected: Option<Duration>,
}

impl Progress {
    /// Whether the time left is estimated (a percent between 0 and 100, or an expected time not
    /// yet reached), not only backed off from the time run so far.
    pub fn is_estimated(&self) -> bool {
        self.percent.is_some_and(|p| p > 0.0 && p < 100.0)
            || self.expected.is_some_and(|e| e > self.elapsed)
    }
}

/// The delay before the next look at a task, at most `longest` (the configured poll interval).
pub fn next_look(progress: &Progress, longest: Duration) -> Duration {
    whole_seconds(remaining(progress)).clamp(MIN_DELAY.min(longest), longest)
}

/// The delay before the next look when a look may wait in its invocation for what remains
/// ([`crate::services::restore::Settle`]): arriving `lead` before the expected end, in whole seconds
/// rounded down, so that the look comes while the task still runs and waits out the rest
/// (the end seen to a fraction of a second rather than up to a second late). Without an
/// estimate (no percent, no expected time) as [`next_look`].
pub fn next_look_ahead(progress: &Progress, longest: Duration, lead: Duration) -> Duration {
    if !progress.is_estimated() || lead.is_zero() {
        return next_look(progress, longest);
    }
    let ahead = remaining(progress).saturating_sub(lead);
    Duration::from_secs(ahead.as_secs()).clamp(MIN_DELAY.min(longest), longest)
}

/// The delay before the next look at a task whose progress is unknown, `elapsed` after it
/// started: half of that (looks at 1, 2, 3, 5, 8 … seconds), so a look comes at most half the
/// task's time after its end.
pub fn backoff(elapsed: Duration, longest: Duration) -> Duration {
    next_look(
        &Progress {
            elapsed,
            ..Progress::default()
        },
        longest,
    )
}

/// The best guess of the time the task has left (not rounded).
pub fn remaining(p: &Progress) -> Duration {
    let running = |x: f64| x > 0.0 && x < 100.0 && x.is_finite();
    // The rate between the last two readings (not since submission: RDS queues tasks, and a
    // restore spends its first moments creating files).
    if let (Some(now), Some((before, ago))) = (p.percent.filter(|x| running(*x)), p.previous) {
        if now > before && !ago.is_zero() {
            return ago.mul_f64((100.0 - now) / (now - before));
        }
    }
    if let Some(now) = p.percent.filter(|x| running(*x)) {
        return p.elapsed.mul_f64((100.0 - now) / now);
    }
    match p.expected {
        Some(expected) if expected > p.elapsed => expected - p.elapsed,
        // Overdue: the model was wrong; back off from the expected end.
        Some(expected) => (p.elapsed - expected) / 2,
        None => p.elapsed / 2,
    }
}

/// `d` rounded up to whole seconds (SQS's delay unit).
fn whole_seconds(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn looks_follow_the_progress_the_target_reports() {
        // (elapsed, percent, previous reading, expected) -> next look
        type Row = (f64, Option<f64>, Option<(f64, f64)>, Option<f64>, u64);
        let table: &[Row] = &[
            // Nothing known: half the time it has run, at least a second.
            (0.0, None, None, None, 1),
            (1.0, None, None, None, 1),
            (6.0, None, None, None, 3),
            (600.0, None, None, None, 60),
            // Expected from earlier restores: look when it should be done.
            (0.0, None, None, Some(7.2), 8),
            (5.0, None, None, Some(7.2), 3),
            // Overdue: back off from the expected end.
            (10.0, None, None, Some(6.0), 2),
            // Percent since submission: 4 s for 40 % leaves 6 s.
            (4.0, Some(40.0), None, None, 6),
            // Two readings: 20 % in the last 2 s, 40 % left: 4 s (not 6 s from submission,
            // which included time queued at 0 %).
            (10.0, Some(60.0), Some((40.0, 2.0)), None, 4),
            // Percent beats the expected time.
            (4.0, Some(40.0), None, Some(100.0), 6),
            // 0 % (queued) says nothing: the expected time or the backoff decides.
            (2.0, Some(0.0), None, Some(9.0), 7),
            (2.0, Some(0.0), Some((0.0, 1.0)), None, 1),
            // Never longer than the poll interval.
            (1.0, Some(0.5), None, None, 60),
        ];
        for &(elapsed, percent, previous, expected, want) in table {
            let progress = Progress {
                elapsed: secs(elapsed),
                percent,
                previous: previous.map(|(p, ago)| (p, secs(ago))),
                expected: expected.map(secs),
            };
            assert_eq!(
                next_look(&progress, MINUTE),
                Duration::from_secs(want),
                "{progress:?}"
            );
        }
    }

    #[test]
    fn a_look_that_can_wait_comes_before_the_expected_end() {
        let lead = Duration::from_secs(1);
        // (elapsed, percent, expected) -> next look
        let table: &[(f64, Option<f64>, Option<f64>, u64)] = &[
            // 3.4 s left: at 2 s, 1.4 s left to wait out.
            (0.0, None, Some(3.4), 2),
            // 1.5 s left: at the shortest delay, 0.5 s left.
            (0.0, None, Some(1.5), 1),
            // 50 % after 10 s: 10 s left, look at 9 s.
            (10.0, Some(50.0), None, 9),
            // Nothing known: as without waiting (half the time it ran).
            (8.0, None, None, 4),
            (8.0, Some(0.0), Some(5.0), 2),
            // Never longer than the poll interval.
            (1.0, Some(0.5), None, 60),
        ];
        for &(elapsed, percent, expected, want) in table {
            let progress = Progress {
                elapsed: secs(elapsed),
                percent,
                previous: None,
                expected: expected.map(secs),
            };
            assert_eq!(
                next_look_ahead(&progress, MINUTE, lead),
                Duration::from_secs(want),
                "{progress:?}"
            );
        }
    }

    #[test]
    fn a_poll_interval_below_a_second_is_the_delay() {
        assert_eq!(backoff(Duration::ZERO, Duration::ZERO), Duration::ZERO);
        assert_eq!(backoff(secs(8.0), secs(0.5)), secs(0.5));
        assert_eq!(backoff(secs(500.0), secs(30.0)), secs(30.0));
    }
}
