//! Where the mirror keeps what it knows, in the lake under `<root>/_mirror/`
//! (docs/decisions.md, "Issue #10"): late markers, the watermark, and per table its claims,
//! publication markers and per-hour logs.

use crate::compact::CollectionHour;
use crate::domain::{LakePath, Segment};

const STATE: &str = "_mirror";
const LATE: &str = "late";

fn seg(text: &str) -> Segment {
    Segment::assemble(text.to_owned())
}

/// Paths under one state root.
#[derive(Debug, Clone)]
pub struct MirrorPaths {
    root: Vec<Segment>,
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

    /// `_mirror/late/<db>/<coll>/<YYYYMMDDHH>/<name>`: a change file stored after the
    /// mirror may have closed its hour.
    pub fn late_marker(&self, key: &CollectionHour, name: Segment) -> LakePath {
        let mut segments = self.under(&[
            seg(LATE),
            key.db.clone(),
            key.coll.clone(),
            seg(&key.hour.compact_digits()),
        ]);
        segments.push(name);
        LakePath::new(segments).unwrap_or_else(|| unreachable!("a path with a name"))
    }
}
