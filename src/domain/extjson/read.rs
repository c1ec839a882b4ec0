//! Reading Extended JSON (canonical or relaxed) into BSON.
//!
//! Objects without `$`-prefixed keys (nearly all of a document) become documents directly
//! while the JSON is parsed; objects with them (type wrappers such as `{"$oid": ..}`,
//! DBRefs, `$`-prefixed field names) are read whole and go through the `bson` crate's own
//! Extended JSON rules, after checks the crate lacks: it reads `$numberDecimal` strings
//! without digits (`"E01"`, `"."`, `""`, `"++1"`) as some number, accepts `{"$date": 42}`,
//! and accepts keys containing NUL, which BSON cannot hold. Such input is refused, naming
//! the field.

use std::cell::{Cell, RefCell};
use std::fmt;

use bson::{Bson, Document};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;
use serde_json::{Map, Value};

/// Why a request body could not be read as change events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON (syntax).
    Malformed {
        detail: String,
        index: Option<usize>,
    },
    /// JSON, but not Extended JSON change event objects.
    Invalid {
        detail: String,
        index: Option<usize>,
    },
}

/// Reads the events of an `application/json` body (one event object, or an array of
/// them), handing each document to `each` as soon as it is read, so a large batch never
/// holds all its documents at once. `each` refuses an event with a message; errors carry
/// the element's index when the body is an array. Returns the number of events.
pub fn parse_json_body(
    body: &[u8],
    each: &mut dyn FnMut(Document) -> Result<(), String>,
) -> Result<usize, BodyError> {
    let context = Context::default();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let visitor = BodyVisitor {
        context: &context,
        each,
    };
    let parsed = de::Deserializer::deserialize_any(&mut deserializer, visitor)
        .and_then(|count| deserializer.end().map(|()| count));
    parsed.map_err(|error| match context.refused_event.take() {
        Some(detail) => BodyError::Invalid {
            detail,
            index: context.index.get(),
        },
        None => context.refusal(error, context.index.get()),
    })
}

/// One event of an NDJSON body; `index` is its position, for errors.
pub fn parse_ndjson_line(line: &[u8], index: usize) -> Result<Document, BodyError> {
    let context = Context::default();
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    EventSeed(&context)
        .deserialize(&mut deserializer)
        .and_then(|document| deserializer.end().map(|()| document))
        .map_err(|error| context.refusal(error, Some(index)))
}

/// State shared by the visitors of one parse. Costs nothing until something fails.
#[derive(Default)]
struct Context {
    /// The failing field's path, innermost part first, filled in as the error unwinds.
    path: RefCell<Vec<String>>,
    /// The array element being read, in a batch.
    index: Cell<Option<usize>>,
    /// Why the event consumer refused an event (parsing stops there).
    refused_event: RefCell<Option<String>>,
}

impl Context {
    fn within(&self, part: impl Into<String>) {
        self.path.borrow_mut().push(part.into());
    }

    fn refusal(&self, error: serde_json::Error, index: Option<usize>) -> BodyError {
        if error.classify() != Category::Data {
            return BodyError::Malformed {
                detail: format!("body is not valid JSON: {error}"),
                index,
            };
        }
        let path: Vec<String> = self.path.borrow().iter().rev().cloned().collect();
        let detail = if path.is_empty() {
            error.to_string()
        } else {
            format!("{}: {error}", path.join("."))
        };
        BodyError::Invalid { detail, index }
    }
}

/// The top of an `application/json` body; yields the number of events.
struct BodyVisitor<'c, 'e> {
    context: &'c Context,
    each: &'e mut dyn FnMut(Document) -> Result<(), String>,
}

impl BodyVisitor<'_, '_> {
    fn hand_over<E: de::Error>(&mut self, document: Document) -> Result<(), E> {
        (self.each)(document).map_err(|detail| {
            self.context.refused_event.replace(Some(detail));
            E::custom("event refused")
        })
    }
}

impl<'de> Visitor<'de> for BodyVisitor<'_, '_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a change event object or an array of them")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<usize, A::Error> {
        let document = EventSeed(self.context).visit_map(map)?;
        self.hand_over(document)?;
        Ok(1)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0;
        loop {
            self.context.index.set(Some(count));
            match seq.next_element_seed(EventSeed(self.context))? {
                Some(document) => self.hand_over(document)?,
                None => break,
            }
            count += 1;
        }
        self.context.index.set(None);
        Ok(count)
    }
}

/// One change event: a JSON object that is a document, not a type wrapper.
#[derive(Clone, Copy)]
struct EventSeed<'c>(&'c Context);

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = Document;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Document, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a change event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Document, A::Error> {
        match ValueSeed(self.0).visit_map(map)? {
            Bson::Document(document) => Ok(document),
            other => Err(de::Error::custom(format!(
                "a change event must be an object, not an Extended JSON {:?} value",
                other.element_type()
            ))),
        }
    }
}

/// Any BSON value.
#[derive(Clone, Copy)]
struct ValueSeed<'c>(&'c Context);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Bson;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Bson, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Bson;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an Extended JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Bson, E> {
        Ok(Bson::Boolean(value))
    }

    // Relaxed numbers as the Extended JSON spec and the `bson` crate read them: integers
    // that fit Int32 are Int32, else Int64, else (beyond i64) Double.
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Bson, E> {
        Ok(i32::try_from(value).map_or(Bson::Int64(value), Bson::Int32))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Bson, E> {
        match i64::try_from(value) {
            Ok(value) => self.visit_i64(value),
            Err(_) => Ok(Bson::Double(value as f64)),
        }
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Bson, E> {
        Ok(Bson::Double(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Bson, E> {
        Ok(Bson::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Bson, E> {
        Ok(Bson::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Bson, E> {
        Ok(Bson::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bson, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Bson::Array(items)),
                Err(error) => {
                    self.0.within(items.len().to_string());
                    return Err(error);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bson, A::Error> {
        let mut document = Document::new();
        let Some(mut key) = map.next_key::<String>()? else {
            return Ok(Bson::Document(document));
        };
        loop {
            if key.starts_with('$') {
                return self.dollar_object(key, map, document);
            }
            if key.contains('\0') {
                self.0.within(key.escape_default().to_string());
                return Err(de::Error::custom("field names cannot contain NUL"));
            }
            match map.next_value_seed(self) {
                Ok(value) => document.insert(key, value),
                Err(error) => {
                    self.0.within(key);
                    return Err(error);
                }
            };
            match map.next_key::<String>()? {
                Some(next) => key = next,
                None => return Ok(Bson::Document(document)),
            }
        }
    }
}

impl ValueSeed<'_> {
    /// An object with a `$`-prefixed key: read the rest as JSON and let the Extended JSON
    /// rules decide, exactly as if the whole object had been read at once. Fields read
    /// before the `$` key go back to canonical Extended JSON, which is lossless.
    fn dollar_object<'de, A: MapAccess<'de>>(
        self,
        key: String,
        mut map: A,
        before: Document,
    ) -> Result<Bson, A::Error> {
        let value: Value = map.next_value()?;
        let next = map.next_key::<String>()?;
        if before.is_empty() && next.is_none() {
            if let Some(bson) = common_wrapper(&key, &value) {
                return Ok(bson);
            }
        }
        let mut object = Map::new();
        for (name, value) in before {
            let text = super::to_extjson_string(&value, super::Encoding::Canonical);
            object.insert(
                name,
                serde_json::from_str(&text).map_err(de::Error::custom)?,
            );
        }
        object.insert(key, value);
        if let Some(name) = next {
            let value = map.next_value()?;
            object.insert(name, value);
            while let Some((name, value)) = map.next_entry::<String, Value>()? {
                object.insert(name, value);
            }
        }
        dollar_object_to_bson(object).map_err(|refusal| {
            self.0.path.borrow_mut().extend(refusal.path);
            de::Error::custom(refusal.problem)
        })
    }
}

/// Why a `$`-keyed object was refused: the problem, and the field path inside the object
/// from the innermost part out.
struct Refusal {
    path: Vec<String>,
    problem: String,
}

impl Refusal {
    fn new(problem: impl Into<String>) -> Refusal {
        Refusal {
            path: Vec::new(),
            problem: problem.into(),
        }
    }

    fn within(mut self, key: impl Into<String>) -> Refusal {
        self.path.push(key.into());
        self
    }
}

fn dollar_object_to_bson(object: Map<String, Value>) -> Result<Bson, Refusal> {
    let value = Value::Object(object);
    check_strict(&value)?;
    Bson::try_from(value).map_err(|e| Refusal::new(format!("invalid Extended JSON: {e}")))
}

/// The one-key wrappers found in nearly every document (`$oid`, `$numberInt`,
/// `$numberLong`, `$numberDouble`, `$date` with `$numberLong`), read directly: the crate's
/// general path costs several times more. Returns `None` for anything else, including
/// every invalid value, so the crate's rules and error messages still decide those.
fn common_wrapper(key: &str, value: &Value) -> Option<Bson> {
    match (key, value) {
        ("$oid", Value::String(hex)) => {
            bson::oid::ObjectId::parse_str(hex).ok().map(Bson::ObjectId)
        }
        ("$numberInt", Value::String(text)) => text.parse().ok().map(Bson::Int32),
        ("$numberLong", Value::String(text)) => text.parse().ok().map(Bson::Int64),
        ("$numberDouble", Value::String(text)) => match text.as_str() {
            "Infinity" => Some(Bson::Double(f64::INFINITY)),
            "-Infinity" => Some(Bson::Double(f64::NEG_INFINITY)),
            "NaN" => Some(Bson::Double(f64::NAN)),
            other => other.parse().ok().map(Bson::Double),
        },
        ("$date", Value::Object(inner)) if inner.len() == 1 => match inner.get("$numberLong") {
            Some(Value::String(text)) => text
                .parse()
                .ok()
                .map(|millis| Bson::DateTime(bson::DateTime::from_millis(millis))),
            _ => None,
        },
        _ => None,
    }
}

/// Checks a `$`-keyed subtree for what the crate would accept but the spec forbids.
fn check_strict(value: &Value) -> Result<(), Refusal> {
    match value {
        Value::Object(object) => {
            if let Some(decimal) = object.get("$numberDecimal").and_then(Value::as_str) {
                if !is_decimal_string(decimal) {
                    return Err(Refusal::new(format!(
                        "$numberDecimal {decimal:?} is not a decimal number"
                    )));
                }
            }
            if let Some(Value::String(date)) = object.get("$date") {
                if finer_than_milliseconds(date) {
                    return Err(Refusal::new(format!(
                        "$date {date:?} is finer than milliseconds, which BSON cannot hold"
                    )));
                }
            }
            if object.get("$date").is_some_and(Value::is_number) {
                return Err(Refusal::new(
                    "$date must be a string or {\"$numberLong\": ...}".to_owned(),
                ));
            }
            for (key, inner) in object {
                if key.contains('\0') {
                    return Err(Refusal::new("field names cannot contain NUL".to_owned())
                        .within(key.escape_default().to_string()));
                }
                check_strict(inner).map_err(|r| r.within(key.as_str()))?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().enumerate().try_for_each(|(index, item)| {
            check_strict(item).map_err(|r| r.within(index.to_string()))
        }),
        _ => Ok(()),
    }
}

/// Whether an ISO-8601 date has more than three fractional digits of seconds: the crate
/// would silently truncate them (towards zero, so even the millisecond can change).
fn finer_than_milliseconds(date: &str) -> bool {
    let Some(time) = date.split_once('T').map(|(_, time)| time) else {
        return false;
    };
    time.split_once('.')
        .is_some_and(|(_, fraction)| fraction.bytes().take_while(u8::is_ascii_digit).count() > 3)
}

/// The Decimal128 string grammar of the Extended JSON spec: an optional sign, then
/// `Infinity`/`Inf`/`NaN` (any case) or digits with at most one `.` and at least one
/// digit, then an optional exponent with at least one digit.
fn is_decimal_string(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if ["infinity", "inf", "nan"]
        .iter()
        .any(|special| unsigned.eq_ignore_ascii_case(special))
    {
        return true;
    }
    let (coefficient, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let digits = coefficient.bytes().filter(u8::is_ascii_digit).count();
    let dots = coefficient.bytes().filter(|&b| b == b'.').count();
    let coefficient_ok = digits > 0 && dots <= 1 && digits + dots == coefficient.len();
    let exponent_ok = exponent.is_none_or(|exponent| {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    coefficient_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_follow_the_spec_grammar() {
        for good in [
            "1",
            "-1.5",
            "+.5",
            "5.",
            "1E+3",
            "1e-3",
            "-0",
            "NaN",
            "-Infinity",
            "inf",
        ] {
            assert!(is_decimal_string(good), "{good}");
        }
        for bad in [
            "", ".", "E01", "++1", "-+1", "e+1", ".e+1", "1E", "1E+-2", "1.2.3", "1x", " 1",
        ] {
            assert!(!is_decimal_string(bad), "{bad}");
        }
    }

    #[test]
    fn lenient_inputs_are_refused_with_their_path() {
        let parse = |text: &str| parse_ndjson_line(text.as_bytes(), 0);
        let Err(BodyError::Invalid { detail, index }) =
            parse(r#"{"a":[{"d":{"$numberDecimal":"E01"}}]}"#)
        else {
            panic!("refused as invalid");
        };
        assert!(
            detail.starts_with("a.0.d: $numberDecimal \"E01\" is not a decimal number"),
            "{detail}"
        );
        assert_eq!(index, Some(0));
        assert!(parse(r#"{"a":{"$date":42}}"#).is_err());
        assert!(parse(r#"{"a":{"$date":"1969-12-31T23:59:59.9995Z"}}"#).is_err());
        assert!(parse(r#"{"a":{"$date":"2012-12-24T12:15:30.501+01:00"}}"#).is_ok());
        assert!(parse("{\"a\\u0000\":1}").is_err());
        assert!(parse(r#"{"b":{"c":{"x\u0000":1}}}"#).is_err());
        assert!(parse(r#"{"a":{"$numberDecimal":"1.5E+3"}}"#).is_ok());
        assert!(matches!(parse("[1]"), Err(BodyError::Invalid { .. })));
        assert!(matches!(parse("{\"a\":"), Err(BodyError::Malformed { .. })));
    }

    #[test]
    fn bodies_are_one_event_or_a_batch() {
        let read = |body: &[u8]| {
            let mut documents = Vec::new();
            parse_json_body(body, &mut |document| {
                documents.push(document);
                Ok(())
            })
            .map(|count| (count, documents))
        };
        let (count, one) = read(br#"{"a":1}"#).expect("object");
        assert_eq!((count, one.len()), (1, 1));
        let (count, many) = read(br#"[{"a":1},{"a":2}]"#).expect("array");
        assert_eq!((count, many.len()), (2, 2));
        let refused = read(br#"[{"a":1},{"a":{"$numberInt":"x"}}]"#).map(drop);
        let Err(BodyError::Invalid { detail, index }) = refused else {
            panic!("refused as invalid: {refused:?}");
        };
        assert_eq!(index, Some(1));
        assert!(detail.starts_with("a: invalid Extended JSON"), "{detail}");
        assert!(matches!(
            read(b"42"),
            Err(BodyError::Invalid { index: None, .. })
        ));
        assert!(matches!(read(b"{} x"), Err(BodyError::Malformed { .. })));
        assert!(matches!(
            read(br#"{"$oid":"573a1390f29313caabcd4135"}"#),
            Err(BodyError::Invalid { .. })
        ));
        // The consumer's refusal stops the reading and names the element.
        let refused =
            parse_json_body(
                br#"[{"a":1},{"a":2},{"a":3}]"#,
                &mut |document| match document.get_i32("a") {
                    Ok(2) => Err("two is refused".to_owned()),
                    _ => Ok(()),
                },
            );
        assert_eq!(
            refused,
            Err(BodyError::Invalid {
                detail: "two is refused".to_owned(),
                index: Some(1)
            })
        );
    }

    #[test]
    fn values_read_like_the_bson_crate_reads_them() {
        // The streaming reader and the crate's own reader agree, wrappers and all.
        let agree = |text: &str| {
            let ours = parse_ndjson_line(text.as_bytes(), 0);
            let theirs = serde_json::from_str::<Value>(text).map(Bson::try_from);
            match (ours, theirs) {
                (Ok(ours), Ok(Ok(Bson::Document(theirs)))) => assert_eq!(ours, theirs, "{text}"),
                (Err(_), Ok(Err(_))) => {}
                (ours, theirs) => panic!("disagree on {text}: {ours:?} vs {theirs:?}"),
            }
        };
        agree(
            r#"{"i":1,"l":3000000000,"u":18446744073709551615,"d":1.5,"e":1e300,"s":"x","n":null,
            "b":true,"a":[1,{"$numberLong":"2"}],"o":{"$oid":"573a1390f29313caabcd4135"},
            "t":{"$date":"2012-12-24T12:15:30.501Z"},"r":{"$ref":"c","$id":1},
            "late":{"y":1,"$ref":"c","$id":2},"empty":{}}"#,
        );
        // A wrapper key after ordinary keys is judged by the crate's rules, as a whole.
        agree(r#"{"x":{"y":1,"$numberInt":"5"}}"#);
        agree(r#"{"x":{"$numberInt":"5","y":1}}"#);
        assert!(parse_ndjson_line(br#"{"x":{"y":1,"$numberInt":"5"}}"#, 0).is_err());
    }

    use bson::{oid::ObjectId, spec::BinarySubtype, Binary, DateTime, Timestamp};
    use proptest::prelude::*;

    fn scalar() -> impl Strategy<Value = Bson> {
        prop_oneof![
            any::<i32>().prop_map(Bson::Int32),
            any::<i64>().prop_map(Bson::Int64),
            any::<f64>().prop_map(Bson::Double),
            any::<String>().prop_map(Bson::String),
            any::<bool>().prop_map(Bson::Boolean),
            Just(Bson::Null),
            any::<i64>().prop_map(|ms| Bson::DateTime(DateTime::from_millis(ms))),
            any::<[u8; 12]>().prop_map(|b| Bson::ObjectId(ObjectId::from_bytes(b))),
            (any::<u32>(), any::<u32>())
                .prop_map(|(time, increment)| Bson::Timestamp(Timestamp { time, increment })),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|bytes| Bson::Binary(Binary {
                subtype: BinarySubtype::Generic,
                bytes
            })),
        ]
    }

    /// Field names without NUL (which both readers refuse, with different words), some
    /// `$`-prefixed to exercise the wrapper paths.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof!["[^\\x00]{0,8}", "\\$[a-zA-Z]{0,8}"]
    }

    fn value() -> impl Strategy<Value = Bson> {
        scalar().prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Bson::Array),
                proptest::collection::vec((key(), inner), 0..6)
                    .prop_map(|fields| Bson::Document(fields.into_iter().collect())),
            ]
        })
    }

    fn bytes(document: &Document) -> Vec<u8> {
        document.to_vec().unwrap_or_default()
    }

    proptest! {
        /// The streaming reader and the crate's reader agree on any document the crate
        /// writes, in both encodings: same BSON, or both refuse.
        #[test]
        fn the_reader_agrees_with_the_crate(fields in proptest::collection::vec((key(), value()), 0..8)) {
            let document: Document = fields.into_iter().collect();
            for text in [
                Bson::Document(document.clone()).into_canonical_extjson().to_string(),
                Bson::Document(document).into_relaxed_extjson().to_string(),
            ] {
                let ours = parse_ndjson_line(text.as_bytes(), 0);
                let theirs = serde_json::from_str::<Value>(&text).map(Bson::try_from);
                match (ours, theirs) {
                    (Ok(ours), Ok(Ok(Bson::Document(theirs)))) => {
                        prop_assert_eq!(bytes(&ours), bytes(&theirs), "{}", text)
                    }
                    (Err(_), Ok(Err(_))) => {}
                    (ours, theirs) => prop_assert!(false, "disagree on {}: {:?} vs {:?}", text, ours, theirs),
                }
            }
        }
    }
}
