//! The age limit (`ServiceOptions::max_age`): a pending event older than it
//! is dropped when it would next be delivered, and reported as expired.

use crate::backend::Removal;
use crate::error::Result;
use crate::event::{now_ms, Event};
use crate::report::FailureKind;
use crate::service::core::Core;

/// Raise times before this instant (2020-01-01T00:00:00Z, in ms) were
/// taken from a clock that had not been set (a device without a real-time
/// clock starts at 1970 until NTP or GPS sets it): such an event's age is
/// unknown, and it never expires.
pub(crate) const CLOCK_SET_FLOOR_MS: u64 = 1_577_836_800_000;

/// Whether an event raised at `raised_at_ms` is older than `max_age_ms` at
/// `now_ms`. Unknown ages never expire: no raise time, a raise time from a
/// clock that was not set, or a clock that now reads before the raise time
/// (it went backwards): an event is never dropped early.
pub(crate) fn is_expired(raised_at_ms: Option<u64>, now_ms: u64, max_age_ms: u64) -> bool {
    match raised_at_ms {
        Some(raised) if raised >= CLOCK_SET_FLOOR_MS => now_ms.saturating_sub(raised) > max_age_ms,
        _ => false,
    }
}

/// The events one delivery call dropped for their age: reported once.
#[derive(Debug, Default)]
pub(super) struct Expired {
    count: u64,
    /// The first one's name and age in ms.
    first: Option<(String, u64)>,
}

impl Core {
    /// Drops `event` (pending as `id`) if the age limit says so; `true` if
    /// it was dropped.
    pub(super) fn expire(&mut self, id: u64, event: &Event, expired: &mut Expired) -> Result<bool> {
        let Some(max_age) = self.max_age_ms else {
            return Ok(false);
        };
        let Some(now) = now_ms() else {
            return Ok(false);
        };
        if !is_expired(event.raised_at_ms, now, max_age) {
            return Ok(false);
        }
        if !self.remove(id, Removal::Expired)? {
            return Ok(false);
        }
        self.counters.expired += 1;
        expired.count += 1;
        let age = now.saturating_sub(event.raised_at_ms.unwrap_or(now));
        expired
            .first
            .get_or_insert_with(|| (event.name.clone(), age));
        Ok(true)
    }

    /// Reports what one delivery call dropped for its age, and makes the
    /// removals durable as the backend's durability says.
    pub(super) fn report_expired(&mut self, expired: Expired) -> Result<()> {
        let Some((name, age)) = expired.first else {
            return Ok(());
        };
        let max_age = self.max_age_ms.unwrap_or(0);
        self.report(
            FailureKind::Expired,
            format!(
                "dropped {} pending event(s) older than the age limit of {}, the first \
                 '{name}' raised {} ago (ServiceOptions max_age)",
                expired.count,
                seconds(max_age),
                seconds(age)
            ),
            0,
        );
        self.commit()
    }
}

/// `ms` as seconds for a message: "86400 s", "1.500 s". In integers: the
/// library formats no floating-point number, so float formatting (about
/// 8 KiB of code) stays out of the shipped library.
fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{}.{:03} s", ms / 1000, ms % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_767_225_600_000; // 2026-01-01

    #[test]
    fn age_limit() {
        assert!(
            !is_expired(Some(T), T + 1000, 1000),
            "exactly the limit is kept"
        );
        assert!(is_expired(Some(T), T + 1001, 1000));
        assert!(!is_expired(None, u64::MAX, 1), "unknown raise time");
    }

    #[test]
    fn a_clock_that_went_backwards_never_drops_early() {
        assert!(!is_expired(Some(T), T - 3_600_000, 1));
        assert!(!is_expired(Some(T), 0, 0));
    }

    #[test]
    fn a_clock_that_was_not_set_gives_no_age() {
        // Raised at boot on a device whose clock starts at 1970, delivered
        // after NTP set it: its age is unknown, not 56 years.
        assert!(!is_expired(Some(5_000), T, 1000));
        assert!(!is_expired(Some(CLOCK_SET_FLOOR_MS - 1), T, 1000));
        assert!(is_expired(Some(CLOCK_SET_FLOOR_MS), T, 1000));
    }

    #[test]
    fn message_seconds() {
        assert_eq!(seconds(86_400_000), "86400 s");
        assert_eq!(seconds(1_500), "1.500 s");
        assert_eq!(seconds(7), "0.007 s");
    }
}
