//! Where compaction keeps what it knows, all in the lake under `<root>/_compact/`
//! (docs/decisions.md, "Issue #9"): claims, late markers and watermarks, and the names
//! of the compacted files themselves.

use sha2::{Digest, Sha256};

use super::Formats;
use crate::domain::{EventHour, LakePath, Segment};

/// The hidden state folder under the compacted root. Encoded names never start with `_`,
/// so no database is called this; lake readers skip `_` folders.
const STATE: &str = "_compact";
const CLAIMS: &str = "parts";
const LATE: &str = "late";
const WATERMARK: &str = "watermark";
const CLAIM_PREFIX: &str = "part-";

/// One collection's hour: the unit compacted into parts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CollectionHour {
    /// Encoded database name, as in the change files' folders.
    pub db: Segment,
    /// Encoded collection name.
    pub coll: Segment,
    pub hour: EventHour,
}

/// A record name stands for itself by a 128-bit hash (decisions: "a million-record claim
/// is 33 MB, a pass holds 16 bytes a record").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NameHash(pub u128);

impl NameHash {
    pub fn of(name: &Segment) -> NameHash {
        NameHash::of_text(name.as_str())
    }

    /// The hash of any text (the mirror's keys).
    pub fn of_text(text: &str) -> NameHash {
        let digest = Sha256::digest(text.as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        NameHash(u128::from_be_bytes(first))
    }

    pub fn hex(self) -> String {
        format!("{:032x}", self.0)
    }

    pub fn parse_hex(text: &str) -> Option<NameHash> {
        (text.len() == 32)
            .then(|| u128::from_str_radix(text, 16).ok().map(NameHash))
            .flatten()
    }
}

/// Paths under one compacted root.
#[derive(Debug, Clone)]
pub struct StatePaths {
    root: Vec<Segment>,
}

fn seg(text: &str) -> Segment {
    Segment::assemble(text.to_owned())
}

impl StatePaths {
    pub fn new(root: Vec<Segment>) -> StatePaths {
        StatePaths { root }
    }

    fn under(&self, parts: &[Segment]) -> Vec<Segment> {
        let mut segments = self.root.clone();
        segments.push(seg(STATE));
        segments.extend_from_slice(parts);
        segments
    }

    fn file(folder: Vec<Segment>, name: Segment) -> LakePath {
        let mut segments = folder;
        segments.push(name);
        LakePath::new(segments).unwrap_or_else(|| unreachable!("a path with a name"))
    }

    /// `<root>/<db>/<coll>/year=YYYY/month=MM/day=DD/hour=HH`: the hour's data files.
    pub fn output_folder(&self, key: &CollectionHour) -> Vec<Segment> {
        let c = key.hour.calendar();
        let mut segments = self.root.clone();
        segments.push(key.db.clone());
        segments.push(key.coll.clone());
        segments.push(seg(&format!("year={:04}", c.year)));
        segments.push(seg(&format!("month={:02}", c.month)));
        segments.push(seg(&format!("day={:02}", c.day)));
        segments.push(seg(&format!("hour={:02}", c.hour)));
        segments
    }

    /// `events-YYYYMMDD-HH[-k].<extension>`: part 1 has no number.
    pub fn data_file(&self, key: &CollectionHour, part: u32, extension: &str) -> LakePath {
        let c = key.hour.calendar();
        let number = if part == 1 {
            String::new()
        } else {
            format!("-{part}")
        };
        let name = format!(
            "events-{:04}{:02}{:02}-{:02}{number}.{extension}",
            c.year, c.month, c.day, c.hour
        );
        StatePaths::file(self.output_folder(key), seg(&name))
    }

    /// `_compact/parts/<db>/<coll>/<YYYYMMDDHH>`: the hour's claims.
    pub fn claims_folder(&self, key: &CollectionHour) -> Vec<Segment> {
        self.under(&[
            seg(CLAIMS),
            key.db.clone(),
            key.coll.clone(),
            seg(&key.hour.compact_digits()),
        ])
    }

    pub fn claim(&self, key: &CollectionHour, part: u32) -> LakePath {
        StatePaths::file(
            self.claims_folder(key),
            seg(&format!("{CLAIM_PREFIX}{part}")),
        )
    }

    /// The part number of a claim's file name.
    pub fn claim_number(name: &Segment) -> Option<u32> {
        let digits = name.as_str().strip_prefix(CLAIM_PREFIX)?;
        match digits.parse::<u32>() {
            Ok(number) if number >= 1 && digits == number.to_string() => Some(number),
            _ => None,
        }
    }

    /// `_compact/late`: every late marker.
    pub fn late_folder(&self) -> Vec<Segment> {
        self.under(&[seg(LATE)])
    }

    /// `_compact/late/<db>/<coll>/<YYYYMMDDHH>/<name>`.
    pub fn late_marker(&self, key: &CollectionHour, name: Segment) -> LakePath {
        super::late::marker_path(&self.late_folder(), key, name)
    }

    /// The collection hour a late marker's path names.
    pub fn late_marker_key(&self, path: &LakePath) -> Option<CollectionHour> {
        super::late::marker_key(&self.late_folder(), path)
    }

    /// `_compact/watermark`.
    pub fn watermark_folder(&self) -> Vec<Segment> {
        self.under(&[seg(WATERMARK)])
    }

    pub fn watermark(&self, hour: EventHour) -> LakePath {
        StatePaths::file(self.watermark_folder(), seg(&hour.compact_digits()))
    }

    pub fn watermark_hour(path: &LakePath) -> Option<EventHour> {
        EventHour::from_compact_digits(path.file_name().as_str())
    }
}

/// A claim's contents: the formats its data files are written in, then the sorted hashes
/// of its records' names, one per line.
pub fn claim_text(formats: &str, names: &[NameHash]) -> Vec<u8> {
    let mut text = Vec::with_capacity(16 + names.len() * 33);
    text.extend_from_slice(b"formats ");
    text.extend_from_slice(formats.as_bytes());
    text.push(b'\n');
    for name in names {
        text.extend_from_slice(name.hex().as_bytes());
        text.push(b'\n');
    }
    text
}

/// A claim read back: its formats and names (sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub formats: Formats,
    pub names: Vec<NameHash>,
}

pub fn parse_claim(bytes: &[u8]) -> Option<Claim> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next()?.strip_prefix("formats ")?.split(',').collect();
    let formats = Formats::parse_list(&names).ok()?;
    let mut names = lines.map(NameHash::parse_hex).collect::<Option<Vec<_>>>()?;
    names.sort_unstable();
    Some(Claim { formats, names })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CollectionHour {
        CollectionHour {
            db: Segment::encode("shop"),
            coll: Segment::encode("orders"),
            hour: "2024-06-16T10".parse().expect("hour"),
        }
    }

    #[test]
    fn data_files_are_named_as_the_issue_says() {
        let paths = StatePaths::new(vec![seg("mongodb"), seg("changes-hourly")]);
        assert_eq!(
            paths.data_file(&key(), 1, "jsonl").to_string(),
            "mongodb/changes-hourly/shop/orders/year=2024/month=06/day=16/hour=10/events-20240616-10.jsonl"
        );
        assert_eq!(
            paths.data_file(&key(), 3, "parquet").file_name().as_str(),
            "events-20240616-10-3.parquet"
        );
    }

    #[test]
    fn state_paths_read_back() {
        let paths = StatePaths::new(vec![seg("h")]);
        let marker = paths.late_marker(&key(), seg("0000000001-0000000001-x-ab.json"));
        assert_eq!(paths.late_marker_key(&marker), Some(key()));
        assert_eq!(
            StatePaths::claim_number(paths.claim(&key(), 12).file_name()),
            Some(12)
        );
        assert_eq!(StatePaths::claim_number(&seg("part-012")), None);
        assert_eq!(
            StatePaths::watermark_hour(&paths.watermark(key().hour)),
            Some(key().hour)
        );
    }

    #[test]
    fn claims_round_trip() {
        let names = vec![NameHash(3), NameHash(u128::MAX), NameHash(0)];
        let claim = parse_claim(&claim_text("jsonl,parquet", &names)).expect("claim");
        assert_eq!(
            claim.formats,
            Formats {
                jsonl: true,
                parquet: true
            }
        );
        assert_eq!(claim.names, [NameHash(0), NameHash(3), NameHash(u128::MAX)]);
        assert_eq!(parse_claim(b"formats jsonl\nnot hex\n"), None);
        assert_eq!(parse_claim(b"formats csv\n"), None);
    }
}
