//! Payload mode: the Functions host wraps the caller's request in an invocation envelope
//! (`{"Data":{"req":{...,"Headers":{..},"Body":"<original body>"}},"Metadata":{..}}`) and
//! expects `{"Outputs":{"res":{statusCode, body, headers}},"Logs":[..],"ReturnValue":null}`
//! back. The host always gets 200; the caller's status is `Outputs.res.statusCode`.
//!
//! The envelope is read without building a tree: `Body` stays the envelope's own text (a
//! borrowed [`RawValue`]) until the signature header has been accepted, so an unsigned
//! envelope costs no more than its bytes. A signature is checked over `Body` as sent, the
//! text the caller signed, before any event is parsed.

use std::fmt;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::Json;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::{finish, framing_for, read_body, AppState};
use crate::blocking::run_sized;
use crate::domain::extjson::Framing;
use crate::error::{IngestError, Reply};
use crate::ingest::Summary;
use crate::signature;

/// Room for the envelope around a body of the maximum size (JSON string escaping).
const ENVELOPE_OVERHEAD: usize = 1024 * 1024;
/// The most header text (names and values) an envelope may carry. The host's own limit
/// on a request's headers is 32 KiB, so only a forged envelope comes near it.
const MAX_HEADER_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
struct Invocation<'a> {
    #[serde(rename = "Data", borrow)]
    data: InvocationData<'a>,
}

#[derive(Deserialize)]
struct InvocationData<'a> {
    /// Named after the trigger binding in `ingest/function.json`.
    #[serde(borrow)]
    req: HttpRequestData<'a>,
}

/// The caller's request. Every other field of the envelope (`Url`, `Query`, `Metadata`,
/// ...) is skipped unread.
#[derive(Deserialize)]
struct HttpRequestData<'a> {
    #[serde(rename = "Headers", default)]
    headers: Headers,
    /// The envelope's text for the body, unparsed: a JSON string holding the body, or
    /// (some hosts) the body as JSON.
    #[serde(rename = "Body", default, borrow)]
    body: Option<&'a RawValue>,
}

/// The caller's headers as `(name, value)` pairs in envelope order. The host sends each
/// header as a list of values (a plain string is accepted too); names that differ only in
/// case are one header, as in HTTP, so their values form one list in the order sent.
#[derive(Default)]
struct Headers {
    pairs: Vec<(String, String)>,
    /// Names and values so far, bounded by [`MAX_HEADER_BYTES`].
    bytes: usize,
}

impl Headers {
    /// Every value of a header, whatever the case of its name, in envelope order.
    fn values<'h>(&'h self, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
        self.pairs
            .iter()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The first value, as forwarding mode reads a single-valued header.
    fn first<'h>(&'h self, name: &'h str) -> Option<&'h str> {
        self.values(name).next()
    }

    /// Every value joined by `,`, as HTTP joins repeated header lines.
    fn joined(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self.values(name).collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    fn push<E: de::Error>(&mut self, name: &str, value: String) -> Result<(), E> {
        self.bytes += name.len() + value.len();
        if self.bytes > MAX_HEADER_BYTES {
            return Err(E::custom("Data.req.Headers holds more than 64 KiB"));
        }
        self.pairs.push((name.to_owned(), value));
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Headers, D::Error> {
        deserializer.deserialize_map(HeadersVisitor)
    }
}

struct HeadersVisitor;

impl<'de> Visitor<'de> for HeadersVisitor {
    type Value = Headers;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of header names to lists of values")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Headers, M::Error> {
        let mut headers = Headers::default();
        while let Some(name) = map.next_key::<String>()? {
            map.next_value_seed(ValuesOf {
                name: &name,
                headers: &mut headers,
            })?;
        }
        Ok(headers)
    }
}

/// Reads one header's values (a list, or a single string) straight into [`Headers`].
struct ValuesOf<'h> {
    name: &'h str,
    headers: &'h mut Headers,
}

impl<'de> DeserializeSeed<'de> for ValuesOf<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValuesOf<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a header value or a list of them")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.headers.push(self.name, value.to_owned())
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut values: S) -> Result<(), S::Error> {
        while let Some(value) = values.next_element::<String>()? {
            self.headers.push(self.name, value)?;
        }
        Ok(())
    }
}

pub(super) async fn ingest(State(state): State<AppState>, request: Request) -> Json<Value> {
    let started = Instant::now();
    let outcome = handle(&state, request).await;
    let log_line = match &outcome {
        Ok(summary) => format!(
            "ingest: {} events, {} written, {} already present, {} skipped",
            summary.events,
            summary.written.len(),
            summary.already_present.len(),
            summary.skipped
        ),
        Err(error) => format!("ingest refused: {}", error.code()),
    };
    Json(envelope(finish("payload", started, &outcome), log_line))
}

async fn handle(state: &AppState, request: Request) -> Result<Summary, IngestError> {
    let limit = state
        .max_body_bytes
        .saturating_mul(2)
        .saturating_add(ENVELOPE_OVERHEAD);
    // The envelope's bytes stay reserved until its events are stored.
    let (envelope, reservation) = read_body(request, limit, &state.budget).await?;
    let task_state = state.clone();
    state
        .after_read(reservation, async move {
            let open_state = task_state.clone();
            let (body, framing) =
                run_sized(envelope.len(), move || open(&open_state, &envelope)).await??;
            task_state.ingest(body, framing).await
        })
        .await
}

/// The caller's body and its format, out of the envelope: the signature header first,
/// then the media type, then the body, which must match the signature before anything
/// parses it. The envelope is only scanned, never turned into a tree.
fn open(state: &AppState, envelope: &[u8]) -> Result<(Bytes, Framing), IngestError> {
    let req = serde_json::from_slice::<Invocation<'_>>(envelope)
        .map_err(|error| {
            IngestError::BadEnvelope(format!(
                "not a custom handler invocation (Data.req): {error}"
            ))
        })?
        .data
        .req;
    let signature = state.expect_signature(Ok(req.headers.joined(signature::HEADER)))?;
    let framing = framing_for(req.headers.first("Content-Type"))?;
    let body = req.body.map_or_else(|| Ok(Bytes::new()), body_bytes)?;
    if body.len() > state.max_body_bytes {
        return Err(IngestError::PayloadTooLarge {
            limit: state.max_body_bytes,
        });
    }
    if let Some(expected) = signature {
        // Already on the blocking pool when the body is large.
        expected
            .verifier
            .verify_body(&expected.header, &body)
            .map_err(IngestError::Unauthorized)?;
    }
    Ok((body, framing))
}

/// The original body: the text of a JSON string (what the caller sent and signed), or,
/// for a host that passed the body as JSON, that JSON's text as it stands in the envelope.
/// (A `null` or missing `Body` never gets here: it is an empty body.)
fn body_bytes(raw: &RawValue) -> Result<Bytes, IngestError> {
    let text = raw.get();
    if !text.starts_with('"') {
        return Ok(Bytes::copy_from_slice(text.as_bytes()));
    }
    unescape(text).map(Bytes::from).ok_or_else(|| {
        IngestError::BadEnvelope("Data.req.Body holds an unpaired UTF-16 surrogate".into())
    })
}

/// The bytes of a JSON string literal (quotes included), already checked by the parser.
/// Done here in one pass into one buffer: serde_json would build the text in a scratch
/// buffer and then copy it, up to three times the body's size.
fn unescape(literal: &str) -> Option<Vec<u8>> {
    let inner = literal.get(1..literal.len().saturating_sub(1))?.as_bytes();
    let mut out = Vec::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(at) = rest.iter().position(|&byte| byte == b'\\') {
        out.extend_from_slice(&rest[..at]);
        let escape = *rest.get(at + 1)?;
        rest = &rest[at + 2..];
        let byte = match escape {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let (character, after) = unicode_escape(rest)?;
                rest = after;
                let mut buffer = [0u8; 4];
                out.extend_from_slice(character.encode_utf8(&mut buffer).as_bytes());
                continue;
            }
            _ => return None,
        };
        out.push(byte);
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// The character of a `\uXXXX` escape (its `\u` already consumed), joining a surrogate
/// pair, and what follows it.
fn unicode_escape(rest: &[u8]) -> Option<(char, &[u8])> {
    let unit = hex4(rest)?;
    let rest = &rest[4..];
    if !(0xD800..0xDC00).contains(&unit) {
        return Some((char::from_u32(unit)?, rest));
    }
    let low = rest.strip_prefix(b"\\u").and_then(hex4)?;
    if !(0xDC00..0xE000).contains(&low) {
        return None;
    }
    let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
    Some((char::from_u32(code)?, &rest[6..]))
}

fn hex4(digits: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(digits.get(..4)?).ok()?;
    u32::from_str_radix(text, 16).ok()
}

fn envelope(reply: Reply, log_line: String) -> Value {
    let mut headers = serde_json::Map::new();
    headers.insert("Content-Type".into(), "application/json".into());
    for (name, value) in reply.extra_headers() {
        headers.insert(name.into(), value.into());
    }
    json!({
        "Outputs": {
            "res": {
                "statusCode": reply.status.as_u16(),
                "body": reply.body.to_string(),
                "headers": headers,
            }
        },
        "Logs": [log_line],
        "ReturnValue": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(envelope: &str) -> HttpRequestData<'_> {
        serde_json::from_str::<Invocation<'_>>(envelope)
            .expect("an invocation")
            .data
            .req
    }

    #[test]
    fn escapes_are_undone_as_serde_json_does() {
        for text in [
            "",
            "plain",
            r#"{"a":"q\"uote","b":"back\\slash"}"#,
            "tab\there\nnew line\r\u{8}\u{c}/",
            "é ü 漢字 🦀 \u{1}\u{1f}",
        ] {
            let literal = serde_json::to_string(text).expect("serialises");
            assert_eq!(unescape(&literal).as_deref(), Some(text.as_bytes()));
        }
        assert_eq!(
            unescape(r#""\u00e9\/\uD83E\uDD80\u0041""#).as_deref(),
            Some("é/🦀A".as_bytes())
        );
        assert_eq!(unescape(r#""\uD83E""#), None, "a lone high surrogate");
        assert_eq!(unescape(r#""\uDD80x""#), None, "a lone low surrogate");
    }

    proptest! {
        #[test]
        fn any_string_comes_back_unchanged(text in any::<String>()) {
            let literal = serde_json::to_string(&text).expect("serialises");
            prop_assert_eq!(unescape(&literal), Some(text.into_bytes()));
        }
    }

    #[test]
    fn the_body_is_kept_as_text_until_asked_for() {
        let req = request(
            r#"{"Data":{"req":{"Body":"[{\"a\":1}]","Query":{"x":[1,2]}}},"Metadata":{"sys":{}}}"#,
        );
        let body = body_bytes(req.body.expect("a body")).expect("valid");
        assert_eq!(body.as_ref(), br#"[{"a":1}]"#);
        // A host that passes the body as JSON: its text as it stands.
        let req = request(r#"{"Data":{"req":{"Body":[ {"a": 1} ]}}}"#);
        let body = body_bytes(req.body.expect("a body")).expect("valid");
        assert_eq!(body.as_ref(), br#"[ {"a": 1} ]"#);
        assert!(request(r#"{"Data":{"req":{"Body":null}}}"#).body.is_none());
        assert!(request(r#"{"Data":{"req":{}}}"#).body.is_none());
    }

    #[test]
    fn header_names_are_one_header_whatever_their_case() {
        let req = request(
            r#"{"Data":{"req":{"Headers":{
                "Content-Type":["application/json"],
                "X-Ingest-Signature":["t=1","v1=aa"],
                "content-type":["text/plain"],
                "x-ingest-signature":"v1=bb",
                "User-Agent":[]
            }}}}"#,
        );
        assert_eq!(req.headers.first("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(
            req.headers.joined(signature::HEADER).as_deref(),
            Some("t=1,v1=aa,v1=bb")
        );
        assert_eq!(req.headers.joined("user-agent"), None);
    }

    #[test]
    fn oversized_or_malformed_headers_are_refused() {
        let big = "x".repeat(MAX_HEADER_BYTES);
        let envelope = format!(r#"{{"Data":{{"req":{{"Headers":{{"A":["{big}"]}}}}}}}}"#);
        assert!(serde_json::from_str::<Invocation<'_>>(&envelope).is_err());
        let envelope = r#"{"Data":{"req":{"Headers":{"A":[1]}}}}"#;
        assert!(serde_json::from_str::<Invocation<'_>>(envelope).is_err());
    }
}
