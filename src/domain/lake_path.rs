//! Paths in the lake that cannot escape their directory, by construction.
//!
//! Every path the service writes is a list of [`Segment`]s, and a `Segment` can only hold
//! characters that are safe everywhere the lake lives: local file systems (Linux, Windows,
//! macOS), ADLS Gen2 path names and the URLs the ADLS client builds from them without
//! escaping. Values taken from events (database and collection names, `_id`s) are *encoded*
//! into segments, never rejected, so no event can be refused or misplaced because of a name.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Longest encoded event value kept verbatim; longer ones are cut and end in a hash.
pub(crate) const MAX_ENCODED_VALUE: usize = 100;
/// Longest segment: file systems and ADLS allow 255 bytes per path component.
pub(crate) const MAX_SEGMENT: usize = 255;
/// Names Windows reserves for devices, with or without an extension, in any case.
const RESERVED_NAMES: [&str; 4] = ["CON", "PRN", "AUX", "NUL"];
const RESERVED_NUMBERED: [&str; 2] = ["COM", "LPT"];
/// Marks a cut value; cannot occur otherwise because `~` is always followed by two hex digits.
const CUT_MARK: &str = "~~";

/// One path component: non-empty, only `[A-Za-z0-9._=~-]`, never starting or ending with
/// `.` (so never `.` or `..`; Azure Storage and Windows drop trailing dots), never a
/// Windows device name (`CON`, `nul.json`, `COM1`, ...), at most 255 bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment(String);

/// Why a configured path component was refused (configuration only: event values are encoded).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    #[error("is empty")]
    Empty,
    #[error("starts with '.'")]
    LeadingDot,
    #[error("ends with '.'")]
    TrailingDot,
    #[error("is a name Windows reserves for a device")]
    Reserved,
    #[error("is longer than {MAX_SEGMENT} bytes")]
    TooLong,
    #[error("contains {0:?}; allowed are letters, digits and . _ = -")]
    Character(char),
}

impl Segment {
    /// Encodes any value taken from an event into a segment.
    ///
    /// ASCII letters, digits, `-`, `_` and `.` are kept; every other byte (of the UTF-8
    /// encoding) becomes `~XX`, as do a leading `.` or `_` (Spark, Synapse and Fabric skip
    /// files and folders whose names start with them), a trailing `.` (dropped by Azure
    /// Storage and Windows), `=` (it would look like a Hive partition) and the first letter
    /// of a Windows device name. The empty string becomes `~`. Values whose encoding is
    /// longer than 100 bytes keep their first part and end in `~~` plus a hash of the whole
    /// value, so distinct values stay distinct.
    pub fn encode(value: &str) -> Segment {
        if value.is_empty() {
            return Segment("~".to_owned());
        }
        let reserved = is_reserved(value);
        let last = value.len() - 1;
        let mut out = String::with_capacity(value.len());
        let mut cut_at = None;
        for (index, byte) in value.bytes().enumerate() {
            let keep = (byte.is_ascii_alphanumeric() && !(index == 0 && reserved))
                || byte == b'-'
                || byte == b'_' && index > 0
                || byte == b'.' && index > 0 && index < last;
            let before = out.len();
            if keep {
                out.push(byte as char);
            } else {
                push_escaped(&mut out, byte);
            }
            if cut_at.is_none() && out.len() > MAX_ENCODED_VALUE - CUT_MARK.len() - 16 {
                cut_at = Some(before);
            }
        }
        if out.len() > MAX_ENCODED_VALUE {
            let keep = cut_at.unwrap_or(0);
            out.truncate(keep);
            out.push_str(CUT_MARK);
            out.push_str(&short_hash(value.as_bytes()));
        }
        Segment(out)
    }

    /// Validates a path component given in configuration (directory, file-name prefix,
    /// template text). Configuration is refused at start-up rather than silently encoded,
    /// so the operator sees the path they asked for or a clear error.
    pub fn literal(text: &str) -> Result<Segment, SegmentError> {
        if text.is_empty() {
            return Err(SegmentError::Empty);
        }
        if text.starts_with('.') {
            return Err(SegmentError::LeadingDot);
        }
        if text.ends_with('.') {
            return Err(SegmentError::TrailingDot);
        }
        if is_reserved(text) {
            return Err(SegmentError::Reserved);
        }
        if text.len() > MAX_SEGMENT {
            return Err(SegmentError::TooLong);
        }
        if let Some(bad) = text.chars().find(|&c| !is_literal_char(c)) {
            return Err(SegmentError::Character(bad));
        }
        Ok(Segment(text.to_owned()))
    }

    /// Builds a segment from text the service assembled out of literals and encoded values.
    ///
    /// Such text is already safe and is kept as is; anything else (which would be a bug) is
    /// encoded rather than trusted, so this constructor cannot produce an unsafe segment.
    pub(crate) fn assemble(text: String) -> Segment {
        if is_safe(&text) {
            Segment(text)
        } else {
            Segment::encode(&text)
        }
    }

    /// Takes a name found in storage (a listing) as it stands, or `None` when no segment
    /// could have produced it: such a name was not written by the service (the local
    /// lake's `.tmp` folder among them), and encoding it would name another file.
    pub(crate) fn stored(text: &str) -> Option<Segment> {
        is_safe(text).then(|| Segment(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `text` is a segment as literals and encoded values make them.
fn is_safe(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('.')
        && !text.ends_with('.')
        && !is_reserved(text)
        && text.len() <= MAX_SEGMENT
        && text.chars().all(|c| is_literal_char(c) || c == '~')
}

/// Windows device names: `CON`, `PRN`, `AUX`, `NUL`, `COM0`-`COM9`, `LPT0`-`LPT9`, in any
/// case, alone or before an extension (`nul.json`).
fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name);
    RESERVED_NAMES.iter().any(|r| stem.eq_ignore_ascii_case(r))
        || (stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit()
            && RESERVED_NUMBERED
                .iter()
                .any(|r| stem.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(r))))
}

fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')
}

fn push_escaped(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('~');
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 0x0f)] as char);
}

/// First 8 bytes of SHA-256 as 16 lowercase hex digits: stable across platforms and
/// releases (unlike `std`'s hasher), which deterministic paths require.
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(16);
    for byte in &digest[..8] {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// A relative path inside the lake's filesystem (container): one or more [`Segment`]s.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LakePath {
    segments: Vec<Segment>,
}

impl LakePath {
    /// `None` for an empty list: a path always names something.
    pub fn new(segments: Vec<Segment>) -> Option<LakePath> {
        (!segments.is_empty()).then_some(LakePath { segments })
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The last segment: the file's name.
    pub fn file_name(&self) -> &Segment {
        // A LakePath is never empty (see `new`).
        &self.segments[self.segments.len() - 1]
    }

    /// Every segment but the last: the folder holding the file.
    pub fn parent_segments(&self) -> &[Segment] {
        &self.segments[..self.segments.len() - 1]
    }

    /// The path below `root` on a local file system. It stays below `root` because no
    /// segment is empty, `.`, `..` or contains a separator.
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(self.segments.iter().map(Segment::as_str));
        path
    }
}

impl fmt::Display for LakePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&join(&self.segments))
    }
}

/// Segments as a `/`-separated path (empty for none): how storage names a folder.
pub fn join(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(Segment::as_str)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assert_safe(segment: &Segment) {
        let text = segment.as_str();
        assert!(!text.is_empty());
        assert!(!text.starts_with('.') && !text.ends_with('.'), "{text}");
        assert!(!is_reserved(text), "{text}");
        assert!(text.len() <= MAX_SEGMENT, "{text}");
        assert!(
            text.chars().all(|c| is_literal_char(c) || c == '~'),
            "{text}"
        );
    }

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(Segment::encode("movies").as_str(), "movies");
        assert_eq!(Segment::encode("sample_mflix").as_str(), "sample_mflix");
        assert_eq!(Segment::encode("a.b-c").as_str(), "a.b-c");
    }

    #[test]
    fn hostile_names_are_encoded() {
        assert_eq!(Segment::encode("..").as_str(), "~2E~2E");
        assert_eq!(Segment::encode("movies.").as_str(), "movies~2E");
        assert_eq!(Segment::encode("CON").as_str(), "~43ON");
        assert_eq!(Segment::encode("nul.json").as_str(), "~6Eul.json");
        assert_eq!(Segment::encode("com7").as_str(), "~63om7");
        assert_eq!(Segment::encode("console").as_str(), "console");
        assert_eq!(Segment::encode("COM10").as_str(), "COM10");
        assert_eq!(Segment::encode(".").as_str(), "~2E");
        assert_eq!(Segment::encode("../../x").as_str(), "~2E.~2F..~2Fx");
        assert_eq!(Segment::encode("a/b").as_str(), "a~2Fb");
        assert_eq!(Segment::encode("#?%").as_str(), "~23~3F~25");
        assert_eq!(Segment::encode("a\u{0}\n").as_str(), "a~00~0A");
        assert_eq!(Segment::encode("").as_str(), "~");
        assert_eq!(Segment::encode("_hidden").as_str(), "~5Fhidden");
        assert_eq!(Segment::encode("year=2024").as_str(), "year~3D2024");
        assert_eq!(Segment::encode("a b+c").as_str(), "a~20b~2Bc");
        assert_eq!(Segment::encode("é").as_str(), "~C3~A9");
        assert_eq!(Segment::encode("~").as_str(), "~7E");
    }

    #[test]
    fn long_values_are_cut_with_a_hash() {
        let long = "x".repeat(1000);
        let encoded = Segment::encode(&long);
        assert!(encoded.as_str().len() <= MAX_ENCODED_VALUE);
        assert!(encoded.as_str().contains(CUT_MARK));
        let other = format!("{}y", "x".repeat(999));
        assert_ne!(encoded, Segment::encode(&other));
        // Escapes are never split by the cut.
        let escaped = Segment::encode(&"/".repeat(1000));
        let kept = escaped.as_str().split(CUT_MARK).next().unwrap_or_default();
        assert_eq!(kept.len() % 3, 0, "{escaped}");
    }

    #[test]
    fn literals_are_validated() {
        assert!(Segment::literal("year=2024").is_ok());
        assert_eq!(Segment::literal(""), Err(SegmentError::Empty));
        assert_eq!(Segment::literal(".."), Err(SegmentError::LeadingDot));
        assert_eq!(Segment::literal("raw."), Err(SegmentError::TrailingDot));
        assert_eq!(Segment::literal("aux"), Err(SegmentError::Reserved));
        assert_eq!(Segment::literal("a b"), Err(SegmentError::Character(' ')));
        assert_eq!(Segment::literal("a/b"), Err(SegmentError::Character('/')));
    }

    #[test]
    fn paths_stay_under_their_root() {
        let path = LakePath::new(vec![Segment::encode(".."), Segment::encode("../etc")])
            .expect("non-empty");
        let root = Path::new("/lake");
        let joined = path.under(root);
        assert!(joined.starts_with(root));
        assert_eq!(joined.components().count(), 4);
        assert_eq!(path.to_string(), "~2E~2E/~2E.~2Fetc");
    }

    proptest! {
        #[test]
        fn any_string_encodes_to_a_safe_segment(value in any::<String>()) {
            let segment = Segment::encode(&value);
            assert_safe(&segment);
            prop_assert!(segment.as_str().len() <= MAX_ENCODED_VALUE);
            prop_assert_eq!(&segment, &Segment::encode(&value));
        }

        #[test]
        fn distinct_strings_encode_to_distinct_segments(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            prop_assert_ne!(Segment::encode(&a), Segment::encode(&b));
        }

        #[test]
        fn case_is_never_folded(value in "[a-zA-Z]{1,20}") {
            let upper = value.to_uppercase();
            prop_assume!(upper != value);
            prop_assert_ne!(Segment::encode(&value), Segment::encode(&upper));
        }

        #[test]
        fn windows_device_names_are_never_produced(
            name in "(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\\.[a-z0-9]{0,4})?\\.?"
        ) {
            assert_safe(&Segment::encode(&name));
            prop_assert!(Segment::literal(&name).is_err());
        }

        #[test]
        fn assemble_never_yields_an_unsafe_segment(text in any::<String>()) {
            assert_safe(&Segment::assemble(text));
        }

        #[test]
        fn lake_paths_never_leave_the_root(values in proptest::collection::vec(any::<String>(), 1..6)) {
            let path = LakePath::new(values.iter().map(|v| Segment::encode(v)).collect())
                .expect("non-empty");
            let root = Path::new("/lake/root");
            let local = path.under(root);
            prop_assert!(local.starts_with(root));
            prop_assert_eq!(local.components().count(), root.components().count() + values.len());
        }
    }
}
