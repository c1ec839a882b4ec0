//! Domain types: what a change event is, what the lake keeps of it, and where.
//! Each type parses its input once and owns its invariants, so the rest of the
//! service never re-checks them.

pub(crate) mod change_event;
pub(crate) mod extjson;
pub(crate) mod hour;
pub(crate) mod lake_path;
pub(crate) mod layout;
pub(crate) mod record;
pub(crate) mod snapshot;

pub use change_event::{ChangeEvent, DataChange, DataOperation, EventError, Namespace};
pub use extjson::Encoding;
pub use hour::{Calendar, EventHour, HourError};
pub use lake_path::{short_hash, LakePath, Segment, SegmentError};
pub use layout::{CompactionTemplateError, Level, PathLayout, TemplateError, DEFAULT_TEMPLATE};
pub use record::{DataSource, Record};
