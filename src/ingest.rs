//! The ingest service: a request body in, records stored, a summary out.
//!
//! A request is all or nothing at the edge: every event is parsed and checked before the
//! first file is written, so a bad event in a batch writes nothing and names its index.
//! Storage is per record and idempotent, so a batch that failed half-way is simply
//! retried: records already stored come back as `alreadyPresent`.

use std::sync::Arc;

use axum::body::Bytes;
use bson::Document;
use serde_json::{json, Value};

use crate::domain::extjson::{self, BodyError};
use crate::domain::{ChangeEvent, Encoding, PathLayout, Record};
use crate::error::IngestError;
use crate::sink::{LakeFile, Sink, SinkError, Stored};

/// Bodies larger than this are parsed on the blocking pool so they do not stall the
/// threads serving other requests.
pub(crate) const INLINE_PARSE_LIMIT: usize = 64 * 1024;

/// How the events are framed in the body, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One change event object, or a JSON array of them.
    Json,
    /// One change event per line.
    Ndjson,
}

impl BodyFormat {
    pub fn from_content_type(content_type: Option<&str>) -> Result<BodyFormat, IngestError> {
        let Some(content_type) = content_type else {
            return Err(IngestError::UnsupportedMediaType(
                "Content-Type is missing; send application/json or application/x-ndjson".into(),
            ));
        };
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(BodyFormat::Json),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Ok(BodyFormat::Ndjson)
            }
            _ => Err(IngestError::UnsupportedMediaType(format!(
                "Content-Type {essence:?} is not supported; send application/json or application/x-ndjson"
            ))),
        }
    }
}

/// What a request did; the body of the 200 answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events: usize,
    pub skipped: usize,
    pub written: Vec<String>,
    pub already_present: Vec<String>,
}

impl Summary {
    pub fn to_json(&self) -> Value {
        json!({
            "events": self.events,
            "written": self.written.len(),
            "alreadyPresent": self.already_present.len(),
            "skipped": self.skipped,
            "paths": { "written": self.written, "alreadyPresent": self.already_present },
        })
    }
}

/// Parses change events, selects and encodes records, and stores them through a [`Sink`].
pub struct Ingestor {
    sink: Arc<dyn Sink>,
    layout: PathLayout,
    encoding: Encoding,
}

impl Ingestor {
    pub fn new(sink: Arc<dyn Sink>, layout: PathLayout, encoding: Encoding) -> Ingestor {
        Ingestor {
            sink,
            layout,
            encoding,
        }
    }

    pub fn sink(&self) -> &dyn Sink {
        self.sink.as_ref()
    }

    /// Handles one request body. Returns once every record is stored, or with the
    /// first storage error once every write of the request has finished.
    pub async fn ingest(
        self: &Arc<Self>,
        body: Bytes,
        format: BodyFormat,
    ) -> Result<Summary, IngestError> {
        let (prepared, events, skipped) = if body.len() > INLINE_PARSE_LIMIT {
            let this = Arc::clone(self);
            tokio::task::spawn_blocking(move || this.prepare(&body, format))
                .await
                .map_err(|e| IngestError::Internal(format!("parsing task failed: {e}")))??
        } else {
            self.prepare(&body, format)?
        };

        let records = prepared.len();
        let paths: Vec<String> = prepared.iter().map(|file| file.path.to_string()).collect();
        let outcomes = self.sink.store_all(prepared).await;
        if outcomes.len() != records {
            // A sink bug must not turn into a 200 for records nobody stored.
            return Err(IngestError::Storage {
                failed: records,
                records,
                first: SinkError::Task(format!(
                    "the sink answered {} results for {records} files",
                    outcomes.len()
                )),
            });
        }

        let mut summary = Summary {
            events,
            skipped,
            ..Summary::default()
        };
        let mut failed = 0;
        let mut first_error = None;
        for (path, outcome) in paths.into_iter().zip(outcomes) {
            match outcome {
                Ok(Stored::Written) => summary.written.push(path),
                Ok(Stored::AlreadyPresent) => summary.already_present.push(path),
                Err(error) => {
                    failed += 1;
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(first) => Err(IngestError::Storage {
                failed,
                records,
                first,
            }),
            None => Ok(summary),
        }
    }

    /// Parses and checks every event, returning the records to store, the number of
    /// events and the number skipped (non-data events). Each event becomes its file as
    /// soon as it is read, so a batch never holds all its parsed documents at once.
    fn prepare(
        &self,
        body: &[u8],
        format: BodyFormat,
    ) -> Result<(Vec<LakeFile>, usize, usize), IngestError> {
        let mut files = Vec::new();
        let mut skipped = 0;
        let mut add = |document: Document| -> Result<(), String> {
            match self.to_file(document)? {
                Some(file) => files.push(file),
                None => skipped += 1,
            }
            Ok(())
        };
        let events = match format {
            BodyFormat::Json => {
                extjson::parse_json_body(body, &mut add).map_err(into_ingest_error)?
            }
            BodyFormat::Ndjson => {
                let lines = body
                    .split(|&byte| byte == b'\n')
                    .filter(|line| !line.iter().all(u8::is_ascii_whitespace));
                let mut count = 0;
                for (index, line) in lines.enumerate() {
                    let document =
                        extjson::parse_ndjson_line(line, index).map_err(into_ingest_error)?;
                    add(document).map_err(|detail| IngestError::InvalidEvent {
                        detail,
                        index: Some(index),
                    })?;
                    count += 1;
                }
                count
            }
        };
        Ok((files, events, skipped))
    }

    /// The file for one change event, or `None` for an event the lake skips.
    fn to_file(&self, document: Document) -> Result<Option<LakeFile>, String> {
        let change = match ChangeEvent::parse(document).map_err(|e| e.to_string())? {
            ChangeEvent::Data(change) => change,
            ChangeEvent::Other { .. } => return Ok(None),
        };
        let record = Record::try_from(*change).map_err(|e| e.to_string())?;
        Ok(Some(LakeFile {
            path: self.layout.path_for(&record),
            contents: record.into_json_line(self.encoding),
        }))
    }
}

fn into_ingest_error(error: BodyError) -> IngestError {
    match error {
        BodyError::Malformed { detail, index } => IngestError::MalformedJson { detail, index },
        BodyError::Invalid { detail, index } => IngestError::InvalidEvent { detail, index },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_recognised() {
        let parse = |ct| BodyFormat::from_content_type(ct).ok();
        assert_eq!(parse(Some("application/json")), Some(BodyFormat::Json));
        assert_eq!(
            parse(Some("Application/JSON; charset=utf-8")),
            Some(BodyFormat::Json)
        );
        assert_eq!(
            parse(Some("application/x-ndjson")),
            Some(BodyFormat::Ndjson)
        );
        assert_eq!(parse(Some("text/plain")), None);
        assert_eq!(parse(Some("application/x-www-form-urlencoded")), None);
        assert_eq!(parse(None), None);
    }

    /// A sink that must never be reached: these tests stop before storage.
    struct Unreachable;

    #[async_trait::async_trait]
    impl Sink for Unreachable {
        async fn store_all(&self, _files: Vec<LakeFile>) -> Vec<Result<Stored, SinkError>> {
            Vec::new()
        }

        fn describe(&self) -> String {
            "unreachable".to_owned()
        }
    }

    fn ingestor() -> Ingestor {
        let layout = PathLayout::new(Vec::new(), crate::domain::DEFAULT_TEMPLATE, None)
            .expect("default template");
        Ingestor::new(Arc::new(Unreachable), layout, Encoding::Relaxed)
    }

    const EVENT: &str = r#"{"_id":{"_data":"82AA"},"operationType":"insert","clusterTime":{"$timestamp":{"t":1,"i":1}},"ns":{"db":"d","coll":"c"},"documentKey":{"_id":1},"fullDocument":{"_id":1}}"#;

    #[test]
    fn ndjson_errors_name_the_event_not_the_line() {
        let body = format!("{EVENT}\r\n\n  \n{{oops\n");
        let error = ingestor()
            .prepare(body.as_bytes(), BodyFormat::Ndjson)
            .map(drop)
            .expect_err("bad line");
        assert_eq!(error.index(), Some(1), "blank lines do not count");
        assert_eq!(error.code(), "malformed_json");

        let body = format!("{EVENT}\n{{\"operationType\":\"insert\"}}\n");
        let error = ingestor()
            .prepare(body.as_bytes(), BodyFormat::Ndjson)
            .map(drop)
            .expect_err("not a change event");
        assert_eq!((error.code(), error.index()), ("invalid_event", Some(1)));
    }

    #[test]
    fn events_become_files_and_others_are_skipped() {
        let body = format!("[{EVENT},{{\"operationType\":\"drop\"}}]");
        let (files, events, skipped) = ingestor()
            .prepare(body.as_bytes(), BodyFormat::Json)
            .expect("valid batch");
        assert_eq!((files.len(), events, skipped), (1, 2, 1));
        let error = ingestor()
            .prepare(b"42", BodyFormat::Json)
            .map(drop)
            .expect_err("not an object");
        assert_eq!((error.code(), error.index()), ("invalid_event", None));
    }
}
