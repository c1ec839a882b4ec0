//! The in-memory namespace: filesystems, directories and files, with committed and staged data.

use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::SystemTime;

/// Whether a path is a file or a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathKind {
    File,
    Directory,
}

impl PathKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PathKind::File => "file",
            PathKind::Directory => "directory",
        }
    }
}

pub(crate) struct Node {
    pub kind: PathKind,
    /// Committed (flushed) contents: what reads and `Content-Length` see.
    pub data: Bytes,
    /// Appended but not flushed, by position.
    pub staged: BTreeMap<u64, Bytes>,
    pub etag: u64,
    pub modified: SystemTime,
    pub created: SystemTime,
    /// `x-ms-properties` as sent (`n1=base64,n2=base64`).
    pub properties: String,
    pub content_type: Option<String>,
}

impl Node {
    pub(crate) fn new(kind: PathKind, etag: u64, now: SystemTime) -> Self {
        Node {
            kind,
            data: Bytes::new(),
            staged: BTreeMap::new(),
            etag,
            modified: now,
            created: now,
            properties: String::new(),
            content_type: None,
        }
    }

    pub(crate) fn staged_len(&self) -> u64 {
        self.staged.values().map(|b| b.len() as u64).sum()
    }

    /// Commits the staged data up to `position`, as Flush does. `Err(())` when the staged
    /// data does not cover `[committed length, position)` contiguously.
    pub(crate) fn flush(&mut self, position: u64, retain_uncommitted: bool) -> Result<(), ()> {
        let committed = self.data.len() as u64;
        if position < committed {
            return Err(());
        }
        let mut cursor = committed;
        let mut parts = Vec::new();
        for (&pos, chunk) in self.staged.range(..position) {
            if pos != cursor {
                return Err(());
            }
            cursor += chunk.len() as u64;
            parts.push(chunk.clone());
        }
        if cursor != position {
            return Err(());
        }
        if !parts.is_empty() {
            let mut buf = BytesMut::with_capacity(position as usize);
            buf.extend_from_slice(&self.data);
            for p in &parts {
                buf.extend_from_slice(p);
            }
            self.data = buf.freeze();
        }
        if retain_uncommitted {
            self.staged = self.staged.split_off(&position);
        } else {
            self.staged.clear();
        }
        Ok(())
    }
}

pub(crate) struct Filesystem {
    pub etag: u64,
    pub modified: SystemTime,
    pub properties: String,
    /// Every path by its full name (`dir/sub/file`), directories included.
    pub paths: BTreeMap<String, Node>,
}

/// What stands where a path's parent directories should be.
pub(crate) enum Ancestors {
    /// All present and directories.
    Present,
    /// These (outermost first) are missing; none is a file.
    Missing(Vec<String>),
    /// This ancestor is a file.
    File(String),
}

impl Filesystem {
    pub(crate) fn new(etag: u64, now: SystemTime) -> Self {
        Filesystem {
            etag,
            modified: now,
            properties: String::new(),
            paths: BTreeMap::new(),
        }
    }

    pub(crate) fn ancestors(&self, path: &str) -> Ancestors {
        let mut missing = Vec::new();
        for (i, _) in path.match_indices('/') {
            let prefix = &path[..i];
            match self.paths.get(prefix) {
                Some(n) if n.kind == PathKind::File => return Ancestors::File(prefix.to_owned()),
                Some(_) => {}
                None => missing.push(prefix.to_owned()),
            }
        }
        if missing.is_empty() {
            Ancestors::Present
        } else {
            Ancestors::Missing(missing)
        }
    }

    /// The keys under directory `dir` (all depths), in key order; `dir` empty means the root.
    pub(crate) fn descendant_keys(&self, dir: &str) -> Vec<String> {
        if dir.is_empty() {
            return self.paths.keys().cloned().collect();
        }
        let prefix = format!("{dir}/");
        self.paths
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub(crate) fn has_children(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.paths
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }
}

/// Orders paths as a depth-first walk does (`a`, `a/b`, `a-c`), not by raw string.
pub(crate) fn hierarchical_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

pub(crate) struct Store {
    pub filesystems: BTreeMap<String, Filesystem>,
    next_etag: u64,
}

impl Store {
    pub(crate) fn new(seed: u64) -> Self {
        Store {
            filesystems: BTreeMap::new(),
            // ETags look like the service's (`0x8DC…`): a 15-digit hex number that only grows.
            next_etag: 0x1_0000_0000 + (seed & 0xFFFF_FFFF) * 0x100,
        }
    }

    pub(crate) fn etag(&mut self) -> u64 {
        self.next_etag += 1;
        self.next_etag
    }
}

/// `0x8DC…` as in list output; headers carry it quoted.
pub(crate) fn etag_str(e: u64) -> String {
    format!("0x8DC{:012X}", e & 0xFFFF_FFFF_FFFF)
}

pub(crate) fn etag_header(e: u64) -> String {
    format!("\"{}\"", etag_str(e))
}

/// A path as held: one name per segment, no leading or trailing `/`.
/// `None` for an empty segment or a `.`/`..` segment.
pub(crate) fn normalize_path(p: &str) -> Option<String> {
    let p = p.strip_prefix('/').unwrap_or(p);
    let p = p.strip_suffix('/').unwrap_or(p);
    if p.is_empty() {
        return Some(String::new());
    }
    if p.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return None;
    }
    Some(p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        Node::new(PathKind::File, 1, SystemTime::now())
    }

    #[test]
    fn flush_needs_contiguous_data() {
        let mut n = node();
        n.staged.insert(0, Bytes::from_static(b"hello "));
        n.staged.insert(6, Bytes::from_static(b"world"));
        assert!(n.flush(5, false).is_err());
        assert!(n.flush(12, false).is_err());
        assert!(n.flush(11, false).is_ok());
        assert_eq!(&n.data[..], b"hello world");
        assert!(n.staged.is_empty());
        // A repeated flush at the same length commits nothing and succeeds.
        assert!(n.flush(11, false).is_ok());
        assert!(n.flush(10, false).is_err());
        // A gap.
        n.staged.insert(12, Bytes::from_static(b"!"));
        assert!(n.flush(13, false).is_err());
    }

    #[test]
    fn flush_can_retain_later_data() {
        let mut n = node();
        n.staged.insert(0, Bytes::from_static(b"ab"));
        n.staged.insert(2, Bytes::from_static(b"cd"));
        n.flush(2, true).unwrap();
        assert_eq!(&n.data[..], b"ab");
        assert_eq!(n.staged_len(), 2);
        n.flush(4, false).unwrap();
        assert_eq!(&n.data[..], b"abcd");
    }

    #[test]
    fn ordering_and_normalizing() {
        let mut v = vec!["a-c", "a/b", "a", "a/b/c", "b"];
        v.sort_by(|a, b| hierarchical_cmp(a, b));
        assert_eq!(v, ["a", "a/b", "a/b/c", "a-c", "b"]);
        assert_eq!(normalize_path("/a/b/").unwrap(), "a/b");
        assert!(normalize_path("a//b").is_none());
        assert!(normalize_path("a/../b").is_none());
    }
}
