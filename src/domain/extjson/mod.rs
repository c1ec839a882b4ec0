//! Extended JSON in and out, keeping every BSON value exact.
//!
//! [`framing`] finds the events in a request body, [`read`] reads an event's small fields
//! into BSON, [`transcode`] writes its documents straight from their text into the
//! record, and [`write`] writes BSON as record text. They follow the Extended JSON v2 spec
//! more strictly than the `bson` crate does on its own; see each module for where and why.

mod framing;
mod read;
mod transcode;
mod write;

pub use framing::{split_events, BodyError, Framing};
pub use read::read_value;
pub use transcode::{write_document, JsonDocument};
pub(crate) use write::write_str;
pub use write::{to_extjson_string, write_bson_document, write_extjson};

/// How records are written: see the README's "Record" section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Relaxed Extended JSON: numbers as JSON numbers, dates in 1970..=9999 as ISO-8601.
    /// Friendly to Synapse SQL `JSON_VALUE` and Spark's JSON reader.
    Relaxed,
    /// Canonical Extended JSON: every value keeps its exact BSON type.
    Canonical,
}

/// JSON that is not the Extended JSON it should be: where (field path inside the value,
/// outermost first) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{problem}", path_prefix(path))]
pub struct ExtJsonError {
    pub path: Vec<String>,
    pub problem: String,
}

impl ExtJsonError {
    pub fn new(problem: impl Into<String>) -> ExtJsonError {
        ExtJsonError {
            path: Vec::new(),
            problem: problem.into(),
        }
    }
}

fn path_prefix(path: &[String]) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{}: ", path.join("."))
    }
}
