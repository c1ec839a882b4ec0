//! Domain types: what a change event is, what the lake keeps of it, and where.
//! Each type parses its input once and owns its invariants, so the rest of the
//! service never re-checks them.

pub mod change_event;
pub mod extjson;
pub mod lake_path;
pub mod layout;
pub mod record;

pub use change_event::{ChangeEvent, DataChange, DataOperation, EventError, Namespace};
pub use extjson::Encoding;
pub use lake_path::{LakePath, Segment, SegmentError};
pub use layout::{PathLayout, TemplateError, DEFAULT_TEMPLATE};
pub use record::{DataSource, Record};
