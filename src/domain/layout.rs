//! Where a record goes: `<directory>/<template folders>/<file name>`.
//!
//! The path is a pure function of the event, so a redelivered event lands on the same path
//! (idempotent writes), and the file name ends in a hash of the event's resume token, so
//! two different events never share a path, even inside one transaction (same
//! `clusterTime`) or when names differ only in case on a case-insensitive file system.

use bson::{spec::BinarySubtype, Bson};

use super::extjson::{to_extjson_string, Encoding};
use super::hour::{Calendar, EventHour};
use super::lake_path::{
    short_hash, LakePath, Segment, SegmentError, MAX_ENCODED_VALUE, MAX_SEGMENT,
};
use super::record::Record;

/// The default folder template: Hive-style partitions on event time (UTC).
pub const DEFAULT_TEMPLATE: &str = "{db}/{coll}/year={year}/month={month}/day={day}/hour={hour}";

/// A value the template can place in a folder name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Db,
    Coll,
    OperationType,
    Year,
    Month,
    Day,
    Hour,
}

impl Field {
    /// The longest text the field renders to.
    fn max_len(self) -> usize {
        match self {
            Field::Db | Field::Coll => MAX_ENCODED_VALUE,
            Field::OperationType => "replace".len(),
            Field::Year => 4,
            Field::Month | Field::Day | Field::Hour => 2,
        }
    }

    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "db" => Field::Db,
            "coll" => Field::Coll,
            "operationType" => Field::OperationType,
            "year" => Field::Year,
            "month" => Field::Month,
            "day" => Field::Day,
            "hour" => Field::Hour,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// Why a path template was refused at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{0}}}; known are {{db}} {{coll}} {{operationType}} {{year}} {{month}} {{day}} {{hour}}")]
    UnknownField(String),
    #[error("has an unclosed '{{'")]
    Unclosed,
    #[error("has an empty folder (leading, trailing or doubled '/')")]
    EmptyFolder,
    #[error("folder {folder:?} {problem}")]
    Text {
        folder: String,
        problem: SegmentError,
    },
    #[error("folder {0:?} can render longer than 255 bytes (db and coll take up to 100 each)")]
    TooLong(String),
}

/// Turns records into lake paths. Built once from configuration.
#[derive(Debug, Clone)]
pub struct PathLayout {
    directory: Vec<Segment>,
    folders: Vec<Vec<Part>>,
    file_prefix: String,
}

impl PathLayout {
    /// `directory` and `file_prefix` are validated segments; `template` is parsed here.
    pub fn new(
        directory: Vec<Segment>,
        template: &str,
        file_prefix: Option<Segment>,
    ) -> Result<PathLayout, TemplateError> {
        let folders = if template.is_empty() {
            Vec::new()
        } else {
            template
                .split('/')
                .map(parse_folder)
                .collect::<Result<_, _>>()?
        };
        Ok(PathLayout {
            directory,
            folders,
            file_prefix: file_prefix
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
        })
    }

    /// The configured directory inside the filesystem: every path starts with it.
    pub fn directory(&self) -> &[Segment] {
        &self.directory
    }

    /// The record's path inside the filesystem (container).
    pub fn path_for(&self, record: &Record) -> LakePath {
        let time = EventHour::of_unix_seconds(i64::from(record.cluster_time.time)).calendar();
        let mut segments = self.directory.clone();
        for folder in &self.folders {
            let mut text = String::new();
            for part in folder {
                match part {
                    Part::Text(literal) => text.push_str(literal),
                    Part::Field(field) => text.push_str(&render(*field, record, &time)),
                }
            }
            segments.push(Segment::assemble(text));
        }
        segments.push(self.file_name(record));
        LakePath::new(segments).unwrap_or_else(|| unreachable!("a path always has a file name"))
    }

    /// `<prefix><clusterTime.t>-<clusterTime.i>-<_id>-<hash of resume token>.json`, with
    /// the numbers zero-padded so names sort in event order.
    fn file_name(&self, record: &Record) -> Segment {
        let id = Segment::encode(&id_text(record.document_key.get("_id")));
        Segment::assemble(format!(
            "{}{:010}-{:010}-{}-{}.json",
            self.file_prefix,
            record.cluster_time.time,
            record.cluster_time.increment,
            id,
            short_hash(record.event_id.as_bytes()),
        ))
    }
}

/// One folder level of the template, as compaction walks it for one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// Made of time fields and text only: the one folder for the hour.
    Fixed(Segment),
    /// Holds the encoded database name between this text (`db={db}` gives `db=`, ``).
    Db { before: String, after: String },
    /// Holds the encoded collection name.
    Coll { before: String, after: String },
    /// Holds the operation type: every folder at this level may hold records of the hour.
    Any,
}

/// Why a template cannot be compacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PATH_TEMPLATE {0}: compaction needs {{db}} and {{coll}} once each, each alone in its folder (with text around it at most), and other fields only as {{operationType}} alone or time fields")]
pub struct CompactionTemplateError(pub &'static str);

impl PathLayout {
    /// The template's folders for the records of `hour`: what compaction lists.
    pub fn levels_for_hour(&self, hour: EventHour) -> Result<Vec<Level>, CompactionTemplateError> {
        let time = hour.calendar();
        let (mut dbs, mut colls) = (0, 0);
        let mut levels = Vec::with_capacity(self.folders.len());
        for folder in &self.folders {
            let fields: Vec<Field> = folder
                .iter()
                .filter_map(|part| match part {
                    Part::Field(field) => Some(*field),
                    Part::Text(_) => None,
                })
                .collect();
            let around = |field: Field| {
                let position = folder.iter().position(|p| *p == Part::Field(field));
                let text = |parts: &[Part]| -> String {
                    parts
                        .iter()
                        .map(|p| match p {
                            Part::Text(text) => text.as_str(),
                            Part::Field(_) => "",
                        })
                        .collect()
                };
                position.map(|at| (text(&folder[..at]), text(&folder[at + 1..])))
            };
            let level = match fields.as_slice() {
                [Field::Db] => {
                    dbs += 1;
                    let (before, after) = around(Field::Db).unwrap_or_default();
                    Level::Db { before, after }
                }
                [Field::Coll] => {
                    colls += 1;
                    let (before, after) = around(Field::Coll).unwrap_or_default();
                    Level::Coll { before, after }
                }
                [Field::OperationType] => Level::Any,
                fields
                    if fields.iter().all(|f| {
                        matches!(f, Field::Year | Field::Month | Field::Day | Field::Hour)
                    }) =>
                {
                    let text: String = folder
                        .iter()
                        .map(|part| match part {
                            Part::Text(text) => text.clone(),
                            Part::Field(field) => render_time(*field, &time),
                        })
                        .collect();
                    Level::Fixed(Segment::assemble(text))
                }
                _ => return Err(CompactionTemplateError("mixes fields in one folder")),
            };
            levels.push(level);
        }
        match (dbs, colls) {
            (1, 1) => Ok(levels),
            _ => Err(CompactionTemplateError(
                "does not hold {db} and {coll} once each",
            )),
        }
    }

    /// The `clusterTime` seconds a change file's name starts with, or `None` for a name
    /// this layout did not make (so a listing can tell a record's hour without reading it).
    pub fn seconds_from_name(&self, name: &Segment) -> Option<u32> {
        let rest = name.as_str().strip_prefix(self.file_prefix.as_str())?;
        let (seconds, rest) = rest.split_at_checked(10)?;
        let (increment, rest) = rest.strip_prefix('-')?.split_at_checked(10)?;
        let digits = |text: &str| text.bytes().all(|b| b.is_ascii_digit());
        (digits(seconds) && digits(increment) && rest.starts_with('-') && rest.ends_with(".json"))
            .then(|| seconds.parse().ok())
            .flatten()
    }
}

fn render_time(field: Field, time: &Calendar) -> String {
    match field {
        Field::Year => format!("{:04}", time.year),
        Field::Month => format!("{:02}", time.month),
        Field::Day => format!("{:02}", time.day),
        Field::Hour => format!("{:02}", time.hour),
        Field::Db | Field::Coll | Field::OperationType => String::new(),
    }
}

fn parse_folder(folder: &str) -> Result<Vec<Part>, TemplateError> {
    if folder.is_empty() {
        return Err(TemplateError::EmptyFolder);
    }
    let mut parts = Vec::new();
    let mut rest = folder;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest.find('}').ok_or(TemplateError::Unclosed)?;
                let name = &rest[1..end];
                let field = Field::parse(name)
                    .ok_or_else(|| TemplateError::UnknownField(name.to_owned()))?;
                parts.push(Part::Field(field));
                rest = &rest[end + 1..];
            }
            found => {
                let end = found.unwrap_or(rest.len());
                let text = &rest[..end];
                // A literal may start a folder only if it is a valid segment on its own;
                // later literals just must not add unsafe characters.
                let check = if parts.is_empty() {
                    Segment::literal(text).map(drop)
                } else {
                    Segment::literal(&format!("x{text}")).map(drop)
                };
                check.map_err(|problem| TemplateError::Text {
                    folder: folder.to_owned(),
                    problem,
                })?;
                parts.push(Part::Text(text.to_owned()));
                rest = &rest[end..];
            }
        }
    }
    let longest: usize = parts
        .iter()
        .map(|part| match part {
            Part::Text(text) => text.len(),
            Part::Field(field) => field.max_len(),
        })
        .sum();
    if longest > MAX_SEGMENT {
        return Err(TemplateError::TooLong(folder.to_owned()));
    }
    Ok(parts)
}

fn render(field: Field, record: &Record, time: &Calendar) -> String {
    match field {
        Field::Db => Segment::encode(&record.ns.db).to_string(),
        Field::Coll => Segment::encode(&record.ns.coll).to_string(),
        Field::OperationType => record.operation.as_str().to_owned(),
        Field::Year | Field::Month | Field::Day | Field::Hour => render_time(field, time),
    }
}

/// A readable form of the document's `_id` for the file name: hex for ObjectIds, the text of
/// strings and integers, the UUID for UUIDs; a hash of the canonical form for anything else
/// (compound keys, doubles, ...), so every type yields a short, stable name part.
fn id_text(id: Option<&Bson>) -> String {
    match id {
        Some(Bson::ObjectId(oid)) => oid.to_hex(),
        Some(Bson::String(text)) => text.clone(),
        Some(Bson::Int32(number)) => number.to_string(),
        Some(Bson::Int64(number)) => number.to_string(),
        Some(Bson::Binary(binary))
            if binary.subtype == BinarySubtype::Uuid && binary.bytes.len() == 16 =>
        {
            binary
                .bytes
                .iter()
                .enumerate()
                .map(|(index, byte)| {
                    let dash = if matches!(index, 4 | 6 | 8 | 10) {
                        "-"
                    } else {
                        ""
                    };
                    format!("{dash}{byte:02x}")
                })
                .collect()
        }
        Some(other) => {
            let canonical = to_extjson_string(other, Encoding::Canonical);
            format!("h{}", short_hash(canonical.as_bytes()))
        }
        None => "noid".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::change_event::{DataOperation, Namespace};
    use crate::domain::extjson::JsonDocument;
    use crate::domain::record::DataSource;
    use bson::{doc, oid::ObjectId, Binary, Timestamp};
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    fn record(
        db: &str,
        coll: &str,
        id: Bson,
        token: &str,
        time: u32,
        increment: u32,
    ) -> Record<'static> {
        let empty: &'static RawValue = serde_json::from_str("{}").expect("JSON");
        Record {
            operation: DataOperation::Insert,
            data_source: DataSource::FullDocument,
            data: JsonDocument::from_raw(empty)
                .expect("an object")
                .expect("not null"),
            event_id: token.to_owned(),
            ns: Namespace {
                db: db.to_owned(),
                coll: coll.to_owned(),
            },
            document_key: doc! {"_id": id},
            cluster_time: Timestamp { time, increment },
            wall_time: None,
            txn_number: None,
            update_description: None,
        }
    }

    fn default_layout() -> PathLayout {
        PathLayout::new(
            vec![Segment::literal("changes").expect("valid")],
            DEFAULT_TEMPLATE,
            None,
        )
        .expect("valid template")
    }

    #[test]
    fn default_layout_is_hive_style_on_event_time() {
        let oid = ObjectId::parse_str("573a1390f29313caabcd4135").expect("hex");
        let path = default_layout().path_for(&record(
            "sample_mflix",
            "movies",
            Bson::ObjectId(oid),
            "82TOKEN",
            1_700_000_000,
            3,
        ));
        let hash = short_hash(b"82TOKEN");
        assert_eq!(
            path.to_string(),
            format!(
                "changes/sample_mflix/movies/year=2023/month=11/day=14/hour=22/\
                 1700000000-0000000003-573a1390f29313caabcd4135-{hash}.json"
            )
        );
    }

    #[test]
    fn every_id_type_gives_a_name() {
        let uuid = Binary {
            subtype: BinarySubtype::Uuid,
            bytes: (0u8..16).collect(),
        };
        let cases = [
            (Bson::String("a/b".into()), "a~2Fb"),
            (Bson::Int32(-5), "-5"),
            (Bson::Int64(9_000_000_000), "9000000000"),
            (Bson::Binary(uuid), "00010203-0405-0607-0809-0a0b0c0d0e0f"),
        ];
        for (id, expected) in cases {
            let path = default_layout().path_for(&record("d", "c", id, "t", 0, 0));
            assert!(
                path.file_name().as_str().contains(&format!("-{expected}-")),
                "{path}"
            );
        }
        let compound = default_layout().path_for(&record(
            "d",
            "c",
            Bson::Document(doc! {"a": 1, "b": [1.5]}),
            "t",
            0,
            0,
        ));
        assert!(compound.file_name().as_str().contains("-h"), "{compound}");
    }

    #[test]
    fn events_sharing_a_cluster_time_get_distinct_names() {
        let layout = default_layout();
        let a = layout.path_for(&record("d", "c", Bson::Int32(1), "82AAAA", 5, 1));
        let b = layout.path_for(&record("d", "c", Bson::Int32(1), "82AAAB", 5, 1));
        assert_ne!(a, b);
    }

    #[test]
    fn names_sort_in_cluster_time_order() {
        let layout = default_layout();
        let times = [(9, 1), (10, 0), (10, 2), (10, 10), (4_000_000_000, 0)];
        let names: Vec<String> = times
            .iter()
            .map(|&(t, i)| {
                layout
                    .path_for(&record("d", "c", Bson::Int32(1), &format!("{t}{i}"), t, i))
                    .file_name()
                    .to_string()
            })
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn templates_and_prefixes_are_applied() {
        let layout = PathLayout::new(
            vec![Segment::literal("raw").expect("valid")],
            "{operationType}/dt={year}-{month}-{day}",
            Some(Segment::literal("movies_").expect("valid")),
        )
        .expect("valid template");
        let path = layout.path_for(&record("d", "c", Bson::Int32(1), "t", 86_400 * 365, 0));
        let text = path.to_string();
        assert!(
            text.starts_with("raw/insert/dt=1971-01-01/movies_0031536000-"),
            "{text}"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        let layout = |t: &str| PathLayout::new(Vec::new(), t, None).map(drop);
        assert_eq!(
            layout("{nope}"),
            Err(TemplateError::UnknownField("nope".into()))
        );
        assert_eq!(layout("{db"), Err(TemplateError::Unclosed));
        assert_eq!(layout("{db}//x"), Err(TemplateError::EmptyFolder));
        assert!(matches!(layout("../{db}"), Err(TemplateError::Text { .. })));
        assert!(matches!(layout("a b"), Err(TemplateError::Text { .. })));
        assert!(matches!(
            layout("{db}{coll}{db}"),
            Err(TemplateError::TooLong(_))
        ));
        assert!(layout("{db}-{coll}").is_ok());
        assert!(layout("").is_ok());
    }

    fn any_id() -> impl Strategy<Value = Bson> {
        prop_oneof![
            any::<String>().prop_map(Bson::String),
            any::<i32>().prop_map(Bson::Int32),
            any::<i64>().prop_map(Bson::Int64),
            any::<f64>().prop_map(Bson::Double),
            any::<[u8; 12]>().prop_map(|b| Bson::ObjectId(ObjectId::from_bytes(b))),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|bytes| Bson::Binary(Binary {
                subtype: BinarySubtype::Uuid,
                bytes
            })),
            (any::<String>(), any::<String>()).prop_map(|(k, v)| Bson::Document(doc! { k: v })),
        ]
    }

    proptest! {
        #[test]
        fn any_event_values_give_a_safe_path_under_the_directory(
            db in any::<String>(),
            coll in any::<String>(),
            id in any_id(),
            token in any::<String>(),
            time in any::<u32>(),
            increment in any::<u32>(),
        ) {
            let path = default_layout().path_for(&record(&db, &coll, id, &token, time, increment));
            prop_assert_eq!(path.segments()[0].as_str(), "changes");
            prop_assert_eq!(path.segments().len(), 8);
            let root = std::path::Path::new("/lake/container");
            prop_assert!(path.under(root).starts_with(root));
            for segment in path.segments() {
                let text = segment.as_str();
                prop_assert!(!text.is_empty() && !text.starts_with('.') && text.len() <= 255);
                prop_assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.=~".contains(c)), "{}", text);
            }
            prop_assert!(path.file_name().as_str().ends_with(".json"));
            prop_assert!(path.to_string().len() < 1024);
        }

        #[test]
        fn different_tokens_never_share_a_path(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            let layout = default_layout();
            prop_assert_ne!(
                layout.path_for(&record("d", "c", Bson::Int32(1), &a, 1, 1)),
                layout.path_for(&record("d", "c", Bson::Int32(1), &b, 1, 1))
            );
        }
    }
}
