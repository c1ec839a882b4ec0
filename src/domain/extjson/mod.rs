//! Extended JSON in and out, keeping every BSON value exact.
//!
//! [`read`] turns request bodies into BSON documents (one pass, no intermediate JSON tree),
//! [`write`] turns BSON into record text. Both follow the Extended JSON v2 spec more
//! strictly than the `bson` crate does on its own; see each module for where and why.

mod read;
mod write;

pub use read::{parse_json_body, parse_ndjson_line, BodyError};
pub(crate) use write::write_str;
pub use write::{to_extjson_string, write_extjson};

/// How records are written: see the README's "Record" section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Relaxed Extended JSON: numbers as JSON numbers, dates in 1970..=9999 as ISO-8601.
    /// Friendly to Synapse SQL `JSON_VALUE` and Spark's JSON reader.
    Relaxed,
    /// Canonical Extended JSON: every value keeps its exact BSON type.
    Canonical,
}
