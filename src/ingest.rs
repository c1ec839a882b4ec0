//! The ingest service: a request body in, records stored, a summary out.
//!
//! A request is all or nothing at the edge: every event is parsed and checked, and its
//! file's bytes made, before the first file is written, so a bad event in a batch writes
//! nothing and names its index. Storage is per record and idempotent, so a batch that
//! failed half-way is simply retried: records already stored come back as `alreadyPresent`.
//!
//! Memory: the body, plus each record's bytes (about the size of its event in relaxed
//! encoding), and nothing in between (README, "Memory").

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::blocking::run_sized;
use crate::compact::{LateMarkers, MarkerCandidate};
use crate::domain::extjson::{split_events, BodyError, Framing};
use crate::domain::{ChangeEvent, Encoding, EventError, PathLayout, Record};
use crate::error::IngestError;
use crate::sink::{counting_retries, LakeFile, Sink, SinkError, SinkHealth, Stored};

/// What a request did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events: usize,
    pub skipped: usize,
    pub written: Vec<String>,
    pub already_present: Vec<String>,
    /// Storage attempts that failed and were tried again (the request's log line).
    pub storage_retries: u32,
}

/// The files a body becomes, with its counts.
#[derive(Debug)]
struct Prepared {
    files: Vec<LakeFile>,
    /// Late markers the files may need once stored (compaction's, the mirror's; usually
    /// none).
    markers: Vec<MarkerCandidate>,
    events: usize,
    skipped: usize,
}

/// Parses change events, selects and encodes records, and stores them through a [`Sink`].
pub struct Ingestor {
    sink: Arc<dyn Sink>,
    layout: PathLayout,
    encoding: Encoding,
    late_markers: Option<LateMarkers>,
    /// Told of every storage outcome: the health answer's news of the sink.
    health: Option<Arc<SinkHealth>>,
    /// What late markers are decided and named by: the system clock, or a test's.
    clock: Clock,
}

/// A source of the current time.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

impl Ingestor {
    pub fn new(sink: Arc<dyn Sink>, layout: PathLayout, encoding: Encoding) -> Ingestor {
        Ingestor {
            sink,
            layout,
            encoding,
            late_markers: None,
            health: None,
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Reads `clock` instead of the system clock: for tests that run compaction and
    /// mirror passes at chosen times, whose clocks must agree with the ingest's as real
    /// instances' do (late markers, docs/decisions.md).
    #[cfg(test)]
    pub fn with_clock(mut self, clock: Clock) -> Ingestor {
        self.clock = clock;
        self
    }

    /// Tells `health` whether each request's files could be stored: a stored file
    /// proves the sink reachable, a write that gave up marks it unreachable.
    pub fn with_health(mut self, health: Arc<SinkHealth>) -> Ingestor {
        self.health = Some(health);
        self
    }

    /// Writes late markers (compaction's, the mirror's) for records of hours a pass may
    /// have listed already (docs/decisions.md, "Never lost" and "Issue #10").
    pub fn with_late_markers(mut self, markers: LateMarkers) -> Ingestor {
        self.late_markers = (!markers.is_empty()).then_some(markers);
        self
    }

    pub fn sink(&self) -> &dyn Sink {
        self.sink.as_ref()
    }

    /// Handles one request body. Returns once every record is stored, or with the
    /// first storage error once every write of the request has finished.
    pub async fn ingest(
        self: &Arc<Self>,
        body: Bytes,
        framing: Framing,
    ) -> Result<Summary, IngestError> {
        let this = Arc::clone(self);
        // The body is dropped as soon as its files are made.
        let prepared = run_sized(body.len(), move || this.prepare(&body, framing)).await??;

        let (mut outcome, retries) = counting_retries(self.store(prepared)).await;
        match &mut outcome {
            Ok(summary) => summary.storage_retries = retries,
            Err(IngestError::Storage {
                retries: counted, ..
            }) => *counted = retries,
            Err(_) => {}
        }
        outcome
    }

    /// Stores the prepared files, then their late markers, and tells the health of it.
    async fn store(&self, prepared: Prepared) -> Result<Summary, IngestError> {
        let records = prepared.files.len();
        let paths: Vec<String> = prepared
            .files
            .iter()
            .map(|file| file.path.to_string())
            .collect();
        let outcomes = self.sink.store_all(prepared.files).await;
        if outcomes.len() != records {
            // A sink bug must not turn into a 200 for records nobody stored.
            return Err(IngestError::Storage {
                failed: records,
                records,
                retries: 0,
                first: SinkError::Task(format!(
                    "the sink answered {} results for {records} files",
                    outcomes.len()
                )),
            });
        }

        let mut summary = Summary {
            events: prepared.events,
            skipped: prepared.skipped,
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
        self.observe(first_error.as_ref(), records > 0);
        if let Some(first) = first_error {
            return Err(IngestError::Storage {
                failed,
                records,
                retries: 0,
                first,
            });
        }
        self.store_late_markers(prepared.markers, records).await?;
        Ok(summary)
    }

    /// Tells the health answer what storing showed: a failure, or (`stored`) files
    /// stored without one.
    fn observe(&self, failure: Option<&SinkError>, stored: bool) {
        let Some(health) = &self.health else {
            return;
        };
        match failure {
            Some(error) => health.unreachable(error),
            None if stored => health.reachable(),
            None => {}
        }
    }

    /// After every record is stored (the clock is read now, so each file was visible
    /// before it): the markers whose time has come, named by this minute. A failure is a
    /// storage failure: the retry finds the records present and writes the markers.
    async fn store_late_markers(
        &self,
        candidates: Vec<MarkerCandidate>,
        records: usize,
    ) -> Result<(), IngestError> {
        let Some(late_markers) = &self.late_markers else {
            return Ok(());
        };
        let due = late_markers.due(&candidates, (self.clock)());
        if due.paths.is_empty() {
            return Ok(());
        }
        let markers: Vec<LakeFile> = due
            .paths
            .iter()
            .map(|path| LakeFile {
                path: path.clone(),
                contents: Vec::new(),
            })
            .collect();
        let outcomes = self.sink.store_all(markers).await;
        let failed = outcomes.iter().filter(|outcome| outcome.is_err()).count();
        let first = outcomes.into_iter().find_map(Result::err);
        self.observe(first.as_ref(), false);
        match first {
            Some(first) => Err(IngestError::Storage {
                failed,
                records,
                retries: 0,
                first,
            }),
            None => {
                late_markers.stored(due);
                Ok(())
            }
        }
    }

    /// Finds, parses and checks every event and makes its file. Each event is read from
    /// the body's text only when its turn comes, so a batch never holds more than the
    /// files made so far.
    fn prepare(&self, body: &[u8], framing: Framing) -> Result<Prepared, IngestError> {
        let events = split_events(body, framing).map_err(IngestError::from)?;
        let now = (self.clock)();
        let mut prepared = Prepared {
            markers: Vec::new(),
            files: Vec::with_capacity(events.texts.len()),
            events: events.texts.len(),
            skipped: 0,
        };
        for (index, text) in events.texts.into_iter().enumerate() {
            let refused = |error: EventError| IngestError::InvalidEvent {
                detail: error.to_string(),
                index: events.is_batch.then_some(index),
            };
            match ChangeEvent::parse(text).map_err(refused)? {
                ChangeEvent::Data(change) => {
                    let record = Record::try_from(*change).map_err(refused)?;
                    let path = self.layout.path_for(&record);
                    if let Some(markers) = &self.late_markers {
                        prepared.markers.extend(markers.candidate(&record, now));
                    }
                    prepared.files.push(LakeFile {
                        path,
                        contents: record.to_json_line(self.encoding).map_err(refused)?,
                    });
                }
                ChangeEvent::Other { .. } => prepared.skipped += 1,
            }
        }
        Ok(prepared)
    }
}

impl From<BodyError> for IngestError {
    fn from(error: BodyError) -> IngestError {
        match error {
            BodyError::Malformed { detail, index } => IngestError::MalformedJson { detail, index },
            BodyError::Invalid { detail, index } => IngestError::InvalidEvent { detail, index },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that must never be reached: these tests stop before storage.
    struct Unreachable;

    #[async_trait::async_trait]
    impl Sink for Unreachable {
        async fn store_all(&self, _files: Vec<LakeFile>) -> Vec<Result<Stored, SinkError>> {
            Vec::new()
        }

        fn list(&self, _folder: &[crate::domain::Segment]) -> crate::sink::ListPages {
            Box::pin(futures_util::stream::empty())
        }

        async fn read(&self, _path: &crate::domain::LakePath) -> Result<Bytes, SinkError> {
            Err(SinkError::Task("unreachable".to_owned()))
        }

        async fn delete(&self, _path: &crate::domain::LakePath) -> Result<(), SinkError> {
            Err(SinkError::Task("unreachable".to_owned()))
        }

        async fn folders(
            &self,
            _folder: &[crate::domain::Segment],
        ) -> Result<Vec<crate::domain::Segment>, SinkError> {
            Err(SinkError::Task("unreachable".to_owned()))
        }

        async fn store_spooled(
            &self,
            _path: &crate::domain::LakePath,
            _spooled: &std::path::Path,
        ) -> Result<Stored, SinkError> {
            Err(SinkError::Task("unreachable".to_owned()))
        }

        fn describe(&self) -> String {
            "unreachable".to_owned()
        }

        async fn probe(&self) -> Result<(), SinkError> {
            Err(SinkError::Task("unreachable".to_owned()))
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
            .prepare(body.as_bytes(), Framing::Ndjson)
            .map(drop)
            .expect_err("bad line");
        assert_eq!(error.index(), Some(1), "blank lines do not count");
        assert_eq!(error.code(), "malformed_json");

        let body = format!("{EVENT}\n{{\"operationType\":\"insert\"}}\n");
        let error = ingestor()
            .prepare(body.as_bytes(), Framing::Ndjson)
            .map(drop)
            .expect_err("not a change event");
        assert_eq!((error.code(), error.index()), ("invalid_event", Some(1)));
    }

    #[test]
    fn events_become_files_and_others_are_skipped() {
        let body = format!("[{EVENT},{{\"operationType\":\"drop\"}}]");
        let prepared = ingestor()
            .prepare(body.as_bytes(), Framing::Json)
            .expect("valid batch");
        assert_eq!(
            (prepared.files.len(), prepared.events, prepared.skipped),
            (1, 2, 1)
        );
        let error = ingestor()
            .prepare(b"42", Framing::Json)
            .map(drop)
            .expect_err("not an object");
        assert_eq!((error.code(), error.index()), ("invalid_event", None));
        let error = ingestor()
            .prepare(
                EVENT
                    .replace("\"_id\":1}}", "\"_id\":{\"$numberInt\":\"x\"}}}")
                    .as_bytes(),
                Framing::Json,
            )
            .map(drop)
            .expect_err("an invalid document");
        assert_eq!((error.code(), error.index()), ("invalid_event", None));
    }
}
