//! UTC hours: the unit compaction works in, named as the layout names them.
//!
//! An [`EventHour`] is a whole hour counted from the Unix epoch, so hours compare, sort
//! and step by one without a date library; the calendar form (`2024-06-16T10`, the folder
//! names, `20240616-10`) is computed from it (`clusterTime` is whole seconds, UTC).

use std::fmt;
use std::str::FromStr;

const SECONDS_PER_HOUR: i64 = 3_600;

/// One UTC hour: `[start, start + 1 h)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventHour(i64);

/// Why a text is not an hour (`YYYY-MM-DDTHH`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an hour; write it as YYYY-MM-DDTHH (UTC), e.g. 2024-06-16T10")]
pub struct HourError(pub String);

/// An hour's calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
}

impl EventHour {
    /// The hour holding a Unix time in seconds.
    pub fn of_unix_seconds(seconds: i64) -> EventHour {
        EventHour(seconds.div_euclid(SECONDS_PER_HOUR))
    }

    /// The hour with these calendar fields, if they name one.
    pub fn from_calendar(calendar: Calendar) -> Option<EventHour> {
        let Calendar {
            year,
            month,
            day,
            hour,
        } = calendar;
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || hour > 23 {
            return None;
        }
        Some(EventHour(
            days_from_civil(year, month, day) * 24 + i64::from(hour),
        ))
    }

    /// Seconds since the epoch at the start of the hour.
    pub fn start_seconds(self) -> i64 {
        self.0 * SECONDS_PER_HOUR
    }

    /// Seconds since the epoch at the end of the hour (the start of the next).
    pub fn end_seconds(self) -> i64 {
        self.start_seconds() + SECONDS_PER_HOUR
    }

    pub fn next(self) -> EventHour {
        EventHour(self.0 + 1)
    }

    pub fn previous(self) -> EventHour {
        EventHour(self.0 - 1)
    }

    /// Howard Hinnant's `civil_from_days`.
    pub fn calendar(self) -> Calendar {
        let days = self.0.div_euclid(24);
        let hour = self.0.rem_euclid(24) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        } as u32;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Calendar {
            year,
            month,
            day,
            hour,
        }
    }

    /// `YYYYMMDDHH`: sorts as the hours do (years 0-9999), for state file names.
    pub fn compact_digits(self) -> String {
        let c = self.calendar();
        format!("{:04}{:02}{:02}{:02}", c.year, c.month, c.day, c.hour)
    }

    /// Parses [`EventHour::compact_digits`].
    pub fn from_compact_digits(text: &str) -> Option<EventHour> {
        if text.len() != 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        EventHour::from_calendar(Calendar {
            year: text[..4].parse().ok()?,
            month: text[4..6].parse().ok()?,
            day: text[6..8].parse().ok()?,
            hour: text[8..].parse().ok()?,
        })
    }
}

/// `YYYY-MM-DDTHH`, as the command line takes it.
impl fmt::Display for EventHour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.calendar();
        write!(f, "{:04}-{:02}-{:02}T{:02}", c.year, c.month, c.day, c.hour)
    }
}

impl FromStr for EventHour {
    type Err = HourError;

    fn from_str(text: &str) -> Result<EventHour, HourError> {
        let error = || HourError(text.to_owned());
        let bytes = text.as_bytes();
        let shape = bytes.len() == 13
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && (bytes[10] == b'T' || bytes[10] == b't')
            && [0..4, 5..7, 8..10, 11..13]
                .into_iter()
                .all(|range| bytes[range].iter().all(u8::is_ascii_digit));
        if !shape {
            return Err(error());
        }
        let number =
            |range: std::ops::Range<usize>| text[range].parse::<u32>().map_err(|_| error());
        EventHour::from_calendar(Calendar {
            year: i64::from(number(0..4)?),
            month: number(5..7)?,
            day: number(8..10)?,
            hour: number(11..13)?,
        })
        .ok_or_else(error)
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_matches_known_dates() {
        let check = |seconds: i64, expected: (i64, u32, u32, u32)| {
            let c = EventHour::of_unix_seconds(seconds).calendar();
            assert_eq!((c.year, c.month, c.day, c.hour), expected, "{seconds}");
        };
        check(0, (1970, 1, 1, 0));
        check(951_782_400, (2000, 2, 29, 0));
        check(1_709_251_199, (2024, 2, 29, 23));
        check(i64::from(u32::MAX), (2106, 2, 7, 6));
    }

    #[test]
    fn text_forms_round_trip_over_every_hour_of_four_years() {
        let first = EventHour::of_unix_seconds(946_684_800); // 2000-01-01T00
        let mut hour = first;
        for _ in 0..(4 * 366 * 24) {
            let shown = hour.to_string();
            assert_eq!(shown.parse::<EventHour>(), Ok(hour), "{shown}");
            assert_eq!(
                EventHour::from_compact_digits(&hour.compact_digits()),
                Some(hour)
            );
            assert_eq!(hour.next().start_seconds(), hour.end_seconds());
            hour = hour.next();
        }
    }

    #[test]
    fn refuses_texts_that_are_not_hours() {
        for text in [
            "2024-02-30T10",
            "2024-06-16T24",
            "2024-13-01T00",
            "2024-06-16",
            "2024-06-16T1",
            "x024-06-16T10",
            "2024-06-16T10:00",
        ] {
            assert!(text.parse::<EventHour>().is_err(), "{text}");
        }
        assert_eq!(
            "2024-06-16T10".parse::<EventHour>().map(|h| h.to_string()),
            Ok("2024-06-16T10".to_owned())
        );
    }
}
