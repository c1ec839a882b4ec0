//! Where the mirror keeps what it knows, in the lake under `<root>/_mirror/`
//! (docs/decisions.md, "Issue #10"): late markers, the watermark, and per table its claims,
//! publication markers and per-hour logs; and the text of a claim and a log.

use serde::{Deserialize, Serialize};

use super::columns::TableColumns;
use super::MirrorError;
use crate::compact::{marker_key, marker_path, CollectionHour, NameHash};
use crate::domain::{EventHour, LakePath, Segment};

const STATE: &str = "_mirror";
const LATE: &str = "late";
const WATERMARK: &str = "watermark";
const TABLES: &str = "tables";
const NO_FULL_DOCUMENT: &str = "noFullDocument";

fn seg(text: &str) -> Segment {
    Segment::assemble(text.to_owned())
}

fn file(mut folder: Vec<Segment>, name: Segment) -> LakePath {
    folder.push(name);
    LakePath::new(folder).unwrap_or_else(|| unreachable!("a path with a name"))
}

/// Step numbers are 20 digits, like the data files, so names sort in number order.
fn number_name(number: u64) -> Segment {
    seg(&format!("{number:020}"))
}

/// The number a 20-digit name stands for.
pub fn parse_number(name: &Segment) -> Option<u64> {
    let text = name.as_str();
    (text.len() == 20 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Paths under one state root.
#[derive(Debug, Clone)]
pub struct MirrorPaths {
    root: Vec<Segment>,
}

/// One collection, as the change files' folders name it (encoded).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableKey {
    pub db: Segment,
    pub coll: Segment,
}

impl MirrorPaths {
    pub fn new(root: Vec<Segment>) -> MirrorPaths {
        MirrorPaths { root }
    }

    fn under(&self, parts: &[Segment]) -> Vec<Segment> {
        let mut segments = self.root.clone();
        segments.push(seg(STATE));
        segments.extend_from_slice(parts);
        segments
    }

    /// `_mirror/late`: every mirror late marker.
    pub fn late_folder(&self) -> Vec<Segment> {
        self.under(&[seg(LATE)])
    }

    /// `_mirror/late/<db>/<coll>/<YYYYMMDDHH>/<name>`: a change file stored after the
    /// mirror may have closed its hour.
    pub fn late_marker(&self, key: &CollectionHour, name: Segment) -> LakePath {
        marker_path(&self.late_folder(), key, name)
    }

    /// The collection hour a late marker's path names.
    pub fn late_marker_key(&self, path: &LakePath) -> Option<CollectionHour> {
        marker_key(&self.late_folder(), path)
    }

    /// `_mirror/watermark/<YYYYMMDDHH>`: hours before it are closed for the mirror.
    pub fn watermark_folder(&self) -> Vec<Segment> {
        self.under(&[seg(WATERMARK)])
    }

    pub fn watermark(&self, hour: EventHour) -> LakePath {
        file(self.watermark_folder(), seg(&hour.compact_digits()))
    }

    /// `_mirror/noFullDocument/<db>/<coll>/<name>`: an update the table could not take.
    pub fn no_full_document(&self, table: &TableKey, name: Segment) -> LakePath {
        file(
            self.under(&[seg(NO_FULL_DOCUMENT), table.db.clone(), table.coll.clone()]),
            name,
        )
    }

    pub fn table(&self, table: &TableKey) -> TablePaths {
        TablePaths {
            folder: self.under(&[seg(TABLES), table.db.clone(), table.coll.clone()]),
        }
    }
}

/// `_mirror/tables/<db>/<coll>/`: one table's steps.
#[derive(Debug, Clone)]
pub struct TablePaths {
    folder: Vec<Segment>,
}

impl TablePaths {
    fn sub(&self, name: &str) -> Vec<Segment> {
        let mut folder = self.folder.clone();
        folder.push(seg(name));
        folder
    }

    pub fn claims_folder(&self) -> Vec<Segment> {
        self.sub("claims")
    }

    /// `claims/<step>`: the lock on a step number and the step's record.
    pub fn claim(&self, step: u64) -> LakePath {
        file(self.claims_folder(), number_name(step))
    }

    pub fn published_folder(&self) -> Vec<Segment> {
        self.sub("published")
    }

    /// `published/<step>`: written last; the step is finished.
    pub fn published(&self, step: u64) -> LakePath {
        file(self.published_folder(), number_name(step))
    }

    pub fn logs_folder(&self) -> Vec<Segment> {
        self.sub("log")
    }

    pub fn hour_logs_folder(&self, hour: EventHour) -> Vec<Segment> {
        let mut folder = self.logs_folder();
        folder.push(seg(&hour.compact_digits()));
        folder
    }

    /// `log/<YYYYMMDDHH>/<step>`: the step's lines for the change files of one hour.
    pub fn hour_log(&self, hour: EventHour, step: u64) -> LakePath {
        file(self.hour_logs_folder(hour), number_name(step))
    }
}

/// What became of one change file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Published as a row (upsert or delete).
    Row,
    /// Older than a state already published for its key, or superseded in its step.
    Stale,
    /// An update without `fullDocument`: no row.
    NoFullDocument,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Row => "row",
            Outcome::Stale => "stale",
            Outcome::NoFullDocument => "noFullDocument",
        }
    }

    fn parse(text: &str) -> Option<Outcome> {
        Some(match text {
            "row" => Outcome::Row,
            "stale" => Outcome::Stale,
            "noFullDocument" => Outcome::NoFullDocument,
            _ => return None,
        })
    }

    /// Counts toward the greatest `eventId` applied for its key.
    pub fn is_ordered(self) -> bool {
        !matches!(self, Outcome::NoFullDocument)
    }
}

/// A key stands for itself by a 128-bit hash in claims and logs.
pub type KeyHash = NameHash;

/// One change file a step handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepLine {
    pub hour: EventHour,
    pub path: LakePath,
    pub event_id: String,
    pub key: KeyHash,
    pub outcome: Outcome,
}

/// What a claim records beside its lines: everything cumulative about the table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimHeader {
    pub step: u64,
    /// The data file this step publishes (`None`: no rows, e.g. only stale changes).
    pub file: Option<u64>,
    /// The number the next data file takes.
    pub next_file: u64,
    /// The table's columns after this step (the data file has exactly these).
    pub columns: TableColumns,
    /// The greatest `eventId` published as a row so far ("" before any).
    pub highest: String,
}

/// A claim: its header, then its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub header: ClaimHeader,
    pub lines: Vec<StepLine>,
}

impl Claim {
    /// `<header JSON>\n` then `<hour> <path> <eventId> <key> <outcome>\n` per line.
    pub fn to_text(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec(&self.header)
            .unwrap_or_else(|_| unreachable!("a header always serializes"));
        text.push(b'\n');
        for line in &self.lines {
            write_line(&mut text, line);
        }
        text
    }

    pub fn parse(text: &[u8], path: &LakePath) -> Result<Claim, MirrorError> {
        let corrupt = |what: &str| MirrorError::Corrupt(format!("mirror claim {path}: {what}"));
        let text = std::str::from_utf8(text).map_err(|_| corrupt("not UTF-8"))?;
        let mut lines = text.lines();
        let header: ClaimHeader = serde_json::from_str(lines.next().unwrap_or_default())
            .map_err(|error| corrupt(&format!("header: {error}")))?;
        let lines = lines
            .map(|line| parse_line(line).ok_or_else(|| corrupt("a line does not parse")))
            .collect::<Result<_, _>>()?;
        Ok(Claim { header, lines })
    }

    /// One hour's log: that hour's lines, in the same line format.
    pub fn hour_log_text(&self, hour: EventHour) -> Vec<u8> {
        let mut text = Vec::new();
        for line in self.lines.iter().filter(|line| line.hour == hour) {
            write_line(&mut text, line);
        }
        text
    }

    /// The hours the claim's lines fall in, each once, in order.
    pub fn hours(&self) -> Vec<EventHour> {
        let mut hours: Vec<EventHour> = self.lines.iter().map(|line| line.hour).collect();
        hours.sort();
        hours.dedup();
        hours
    }
}

/// A log's lines.
pub fn parse_log(text: &[u8], path: &LakePath) -> Result<Vec<StepLine>, MirrorError> {
    let corrupt = || MirrorError::Corrupt(format!("mirror log {path} does not parse"));
    std::str::from_utf8(text)
        .map_err(|_| corrupt())?
        .lines()
        .map(|line| parse_line(line).ok_or_else(corrupt))
        .collect()
}

fn write_line(text: &mut Vec<u8>, line: &StepLine) {
    text.extend_from_slice(
        format!(
            "{} {} {} {} {}\n",
            line.hour.compact_digits(),
            line.path,
            line.event_id,
            line.key.hex(),
            line.outcome.as_str()
        )
        .as_bytes(),
    );
}

fn parse_line(line: &str) -> Option<StepLine> {
    let mut fields = line.split(' ');
    let hour = EventHour::from_compact_digits(fields.next()?)?;
    let path = parse_path(fields.next()?)?;
    let event_id = fields.next()?.to_owned();
    let key = NameHash::parse_hex(fields.next()?)?;
    let outcome = Outcome::parse(fields.next()?)?;
    fields.next().is_none().then_some(StepLine {
        hour,
        path,
        event_id,
        key,
        outcome,
    })
}

fn parse_path(text: &str) -> Option<LakePath> {
    let segments = text
        .split('/')
        .map(Segment::stored)
        .collect::<Option<Vec<_>>>()?;
    LakePath::new(segments)
}
