//! How change events are framed in a request body: one JSON object, a JSON array of them,
//! or NDJSON (one object per line).
//!
//! Framing only finds each event's JSON text; it builds nothing from it. The result borrows
//! the body (16 bytes per event), so a body of any shape costs no more than itself here;
//! each event is read later, one at a time, by the domain.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// What the body is expected to hold, in the words of every framing error.
const EXPECTED: &str =
    "expected a change event object, a JSON array of them, or NDJSON (one event per line)";

/// The byte order mark some Windows tools put first; JSON lets a reader skip it (RFC 8259 §8.1).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// How the events are framed in the body, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One change event object, or a JSON array of them.
    Json,
    /// One change event per line; blank lines are ignored.
    Ndjson,
}

/// Why a request body could not be read as change events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON (syntax, encoding, or nothing at all).
    Malformed {
        detail: String,
        index: Option<usize>,
    },
    /// JSON, but not change event objects.
    Invalid {
        detail: String,
        index: Option<usize>,
    },
}

/// The events of a body, as text.
#[derive(Debug)]
pub struct Events<'b> {
    /// Each event's JSON text, in order.
    pub texts: Vec<&'b RawValue>,
    /// Whether the body is a batch (an array or NDJSON), whose errors name the event's index.
    pub is_batch: bool,
}

/// Finds the events in `body`.
pub fn split_events(body: &[u8], framing: Framing) -> Result<Events<'_>, BodyError> {
    let body = body.strip_prefix(BOM).unwrap_or(body);
    let text = std::str::from_utf8(body).map_err(|error| BodyError::Malformed {
        detail: format!(
            "body is not UTF-8 text (byte {} is not); {EXPECTED}",
            error.valid_up_to()
        ),
        index: match framing {
            Framing::Json => None,
            Framing::Ndjson => Some(events_before(&body[..error.valid_up_to()])),
        },
    })?;
    if is_blank(text) {
        return Err(BodyError::Malformed {
            detail: format!("the body is empty; {EXPECTED}"),
            index: None,
        });
    }
    let is_batch = framing == Framing::Ndjson || text.trim_start().starts_with('[');
    let texts = match framing {
        Framing::Json => json_events(text),
        Framing::Ndjson => text
            .split('\n')
            .filter(|line| !is_blank(line))
            .enumerate()
            .map(|(index, line)| {
                let event = serde_json::from_str::<&RawValue>(line)
                    .map_err(|error| malformed(&error, Some(index)))?;
                expect_object(event, Some(index))
            })
            .collect(),
    }?;
    Ok(Events { texts, is_batch })
}

/// Events of an `application/json` body: one object, or an array of objects.
fn json_events(text: &str) -> Result<Vec<&RawValue>, BodyError> {
    let starts_array = text.trim_start().starts_with('[');
    if !starts_array {
        let event =
            serde_json::from_str::<&RawValue>(text).map_err(|error| malformed(&error, None))?;
        return expect_object(event, None).map(|event| vec![event]);
    }
    let read = std::cell::Cell::new(0);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let events = de::Deserializer::deserialize_seq(&mut deserializer, ArrayOfEvents(&read))
        .and_then(|events| deserializer.end().map(|()| events))
        .map_err(|error| malformed(&error, Some(read.get())))?;
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| expect_object(event, Some(index)))
        .collect()
}

/// The elements of a JSON array, as text; counts them in `.0` so a syntax error can name
/// the element it is in.
struct ArrayOfEvents<'c>(&'c std::cell::Cell<usize>);

impl<'de> Visitor<'de> for ArrayOfEvents<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of change events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(event) = seq.next_element::<&RawValue>()? {
            events.push(event);
            self.0.set(events.len());
        }
        Ok(events)
    }
}

fn expect_object(event: &RawValue, index: Option<usize>) -> Result<&RawValue, BodyError> {
    if event.get().starts_with('{') {
        return Ok(event);
    }
    let found = match event.get().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    };
    let detail = match index {
        Some(_) => format!("a change event must be a JSON object, found {found}"),
        None => format!("found {found}; {EXPECTED}"),
    };
    Err(BodyError::Invalid { detail, index })
}

fn malformed(error: &serde_json::Error, index: Option<usize>) -> BodyError {
    BodyError::Malformed {
        detail: format!("body is not valid JSON: {error}"),
        index,
    }
}

/// Whether `text` is only JSON whitespace (space, tab, CR, LF; not Unicode spaces, which
/// JSON does not allow between values).
fn is_blank(text: &str) -> bool {
    text.bytes()
        .all(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
}

/// The index of the NDJSON event whose line `head` ends in: the events on the complete
/// lines before it (to name the event a bad byte is in).
fn events_before(head: &[u8]) -> usize {
    let complete = match head.iter().rposition(|&byte| byte == b'\n') {
        Some(end) => &head[..end],
        None => return 0,
    };
    complete
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\r')))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(body: &str, framing: Framing) -> Result<Vec<String>, BodyError> {
        split_events(body.as_bytes(), framing)
            .map(|events| events.texts.iter().map(|e| e.get().to_owned()).collect())
    }

    #[test]
    fn bodies_are_one_event_an_array_or_lines() {
        assert_eq!(
            texts(r#" {"a":1} "#, Framing::Json),
            Ok(vec![r#"{"a":1}"#.into()])
        );
        assert_eq!(
            texts(r#"[{"a":1}, {"a":2}]"#, Framing::Json),
            Ok(vec![r#"{"a":1}"#.into(), r#"{"a":2}"#.into()])
        );
        assert_eq!(texts("[]", Framing::Json), Ok(vec![]));
        assert_eq!(
            texts("{\"a\":1}\r\n\n  \n{\"a\":2}\n", Framing::Ndjson),
            Ok(vec![r#"{"a":1}"#.into(), r#"{"a":2}"#.into()])
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let body = "\u{feff}{\"a\":1}";
        assert_eq!(texts(body, Framing::Json), Ok(vec![r#"{"a":1}"#.into()]));
        assert_eq!(texts(body, Framing::Ndjson), Ok(vec![r#"{"a":1}"#.into()]));
        // Only at the start: elsewhere it is not whitespace.
        assert!(texts("{\"a\":1}\n\u{feff}{\"a\":2}", Framing::Ndjson).is_err());
    }

    #[test]
    fn errors_say_what_was_expected_and_where() {
        for empty in ["", "  \n", "\u{feff}"] {
            let Err(BodyError::Malformed { detail, index }) = texts(empty, Framing::Json) else {
                panic!("empty body refused");
            };
            assert!(
                detail.contains("empty") && detail.contains("change event"),
                "{detail}"
            );
            assert_eq!(index, None);
        }
        let Err(BodyError::Invalid { detail, index }) = texts("42", Framing::Json) else {
            panic!("a number is not an event");
        };
        assert!(
            detail.contains("found a number") && detail.contains("NDJSON"),
            "{detail}"
        );
        assert_eq!(index, None);
        assert!(matches!(
            texts("[{}, 2]", Framing::Json),
            Err(BodyError::Invalid { index: Some(1), .. })
        ));
        assert!(matches!(
            texts("[{}, {}, {oops}]", Framing::Json),
            Err(BodyError::Malformed { index: Some(2), .. })
        ));
        assert!(matches!(
            texts("{} x", Framing::Json),
            Err(BodyError::Malformed { index: None, .. })
        ));
        assert!(matches!(
            texts("{}\n\n{oops\n", Framing::Ndjson),
            Err(BodyError::Malformed { index: Some(1), .. })
        ));
        assert!(matches!(
            split_events(b"{}\n{\"a\":\"\xff\"}", Framing::Ndjson),
            Err(BodyError::Malformed { index: Some(1), .. })
        ));
        assert!(matches!(
            split_events(b"{}\n\n\xff{}", Framing::Ndjson),
            Err(BodyError::Malformed { index: Some(1), .. })
        ));
        assert!(matches!(
            split_events(b"\xff{}", Framing::Ndjson),
            Err(BodyError::Malformed { index: Some(0), .. })
        ));
        // A line of Unicode spaces is not blank: it is not JSON.
        assert!(matches!(
            texts("{}\n\u{a0}\n{}", Framing::Ndjson),
            Err(BodyError::Malformed { index: Some(1), .. })
        ));
    }
}
