//! Dates, identifiers and decoding, written out here so the crate needs no date library.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RFC 1123 (`Thu, 16 Jun 2022 10:22:59 GMT`), as the service writes `Date` and `Last-Modified`.
pub(crate) fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

fn unix(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let mut s = -(d.as_secs() as i64);
            let mut n = d.subsec_nanos();
            if n > 0 {
                s -= 1;
                n = 1_000_000_000 - n;
            }
            (s, n)
        }
    }
}

fn from_unix(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos as u64)
    }
}

// Howard Hinnant's civil-date algorithms.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = (y - era * 400) as u64;
    let mp = ((m + 9) % 12) as u64;
    let doy = (153 * mp + 2) / 5 + d as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = (if z >= 0 { z } else { z - 146_096 }) / 146_097;
    let doe = (z - era * 146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn split_time(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let (secs, nanos) = unix(t);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (y, mo, d) = civil_from_days(days);
    (y, mo, d, rem / 3600, rem / 60 % 60, rem % 60, nanos)
}

/// `2024-01-02T03:04:05Z`: the form SAS `st` and `se` take.
pub(crate) fn iso8601_seconds(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = split_time(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2024-01-02T03:04:05.1234567Z`: the form of `Time:` in the service's error messages.
pub(crate) fn iso8601_ticks(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, n) = split_time(t);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:07}Z",
        n / 100
    )
}

/// Parses the ISO 8601 forms a SAS may carry: `YYYY-MM-DD`, `YYYY-MM-DDThh:mmZ`,
/// `YYYY-MM-DDThh:mm:ssZ` and `YYYY-MM-DDThh:mm:ss.fffffffZ`.
pub(crate) fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let (mut h, mut mi, mut sec, mut nanos) = (0, 0, 0, 0u32);
    if b.len() > 10 {
        if b[10] != b'T' || *b.last()? != b'Z' || b.len() < 17 || b[13] != b':' {
            return None;
        }
        h = num(11..13)?;
        mi = num(14..16)?;
        let rest = &s[16..s.len() - 1];
        if !rest.is_empty() {
            let rest = rest.strip_prefix(':')?;
            let (whole, frac) = rest.split_once('.').unwrap_or((rest, ""));
            if whole.len() != 2 || !whole.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            sec = whole.parse().ok()?;
            if !frac.is_empty() {
                if frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                nanos = format!("{frac:0<9}").parse().ok()?;
            }
        }
        if h > 23 || mi > 59 || sec > 59 {
            return None;
        }
    }
    let days = days_from_civil(y as i64, mo, d);
    Some(from_unix(
        days * 86_400 + (h * 3600 + mi * 60 + sec) as i64,
        nanos,
    ))
}

/// Windows FILETIME (100 ns ticks since 1601), as the list output's `creationTime`.
pub(crate) fn filetime(t: SystemTime) -> u64 {
    let (s, n) = unix(t);
    ((s + 11_644_473_600).max(0) as u64) * 10_000_000 + (n / 100) as u64
}

/// Percent-decodes `%XX` only (a `+` stays a `+`, as in a URL path), requiring UTF-8.
/// `None` for a `%` not followed by two hex digits or for bytes that are not UTF-8.
pub(crate) fn percent_decode_path(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = (*b.get(i + 1)? as char).to_digit(16)?;
            let lo = (*b.get(i + 2)? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Request identifiers in the service's UUID form.
pub(crate) struct IdGen {
    base: u128,
    counter: AtomicU64,
}

impl IdGen {
    pub(crate) fn new() -> Self {
        let state = std::collections::hash_map::RandomState::new();
        let mut h1 = state.build_hasher();
        h1.write_u64(1);
        let mut h2 = state.build_hasher();
        h2.write_u64(2);
        IdGen {
            base: ((h1.finish() as u128) << 64) | h2.finish() as u128,
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) as u128;
        let v = self.base ^ (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) << 16);
        let hex = format!("{v:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// A pseudo-random number, for ETag seeds.
    pub(crate) fn seed(&self) -> u64 {
        (self.base >> 80) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip() {
        let t = parse_iso8601("2024-02-29T23:59:58Z").unwrap();
        assert_eq!(iso8601_seconds(t), "2024-02-29T23:59:58Z");
        assert_eq!(http_date(t), "Thu, 29 Feb 2024 23:59:58 GMT");
        let t = parse_iso8601("1999-12-31").unwrap();
        assert_eq!(iso8601_seconds(t), "1999-12-31T00:00:00Z");
        let t = parse_iso8601("2030-01-01T10:20Z").unwrap();
        assert_eq!(iso8601_seconds(t), "2030-01-01T10:20:00Z");
        let t = parse_iso8601("2030-01-01T10:20:30.5Z").unwrap();
        assert_eq!(iso8601_ticks(t), "2030-01-01T10:20:30.5000000Z");
        assert!(parse_iso8601("2030-13-01").is_none());
        assert!(parse_iso8601("2030-01-01T10:20:30").is_none());
        assert!(parse_iso8601("garbage").is_none());
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode_path("a%20b+c").unwrap(), "a b+c");
        assert_eq!(percent_decode_path("%C3%A9").unwrap(), "é");
        assert!(percent_decode_path("a%2").is_none());
        assert!(percent_decode_path("a%zz").is_none());
        assert!(percent_decode_path("%FF").is_none());
    }

    #[test]
    fn ids_look_like_uuids() {
        let g = IdGen::new();
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
