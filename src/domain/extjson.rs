//! Extended JSON in and out, keeping every BSON value exact.
//!
//! Reading: objects without `$`-prefixed keys (nearly all of a document) are converted
//! here directly; objects with them (type wrappers such as `{"$oid": ..}`, DBRefs,
//! `$`-prefixed field names) go through the `bson` crate's own Extended JSON rules, after
//! checks the crate lacks: it reads `$numberDecimal` strings without digits (`"E01"`, `"."`,
//! `""`, `"++1"`) as some number, and accepts keys containing NUL, which BSON cannot hold.
//! Such input is refused, naming the field.
//!
//! Writing: JSON text is written straight from BSON. The crate's own writers are close but
//! not exact: its canonical form writes subnormal doubles (`5e-324`) as bare JSON numbers,
//! prints negative NaN as `-NaN` (not Extended JSON), and decides whether a date fits the
//! relaxed ISO form through a calendar conversion that clamps at year 9999 unless built with
//! `large_dates`. Rare types (binary, regex, symbol, ...) reuse the crate's exact output.

use std::io::Write;

use bson::{Bson, Document};
use serde_json::Value;

/// How records are written: see the README's "Record" section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Relaxed Extended JSON: numbers as JSON numbers, dates in 1970..=9999 as ISO-8601.
    /// Friendly to Synapse SQL `JSON_VALUE` and Spark's JSON reader.
    Relaxed,
    /// Canonical Extended JSON: every value keeps its exact BSON type.
    Canonical,
}

/// Milliseconds of 10000-01-01T00:00:00Z: relaxed dates from here on keep `$numberLong`.
const YEAR_10000_MS: i64 = 253_402_300_800_000;

/// Why input was refused: the problem, and the field path from the innermost part out.
struct Refusal {
    path: Vec<String>,
    problem: String,
}

impl Refusal {
    fn new(problem: String) -> Refusal {
        Refusal {
            path: Vec::new(),
            problem,
        }
    }

    fn within(mut self, key: impl Into<String>) -> Refusal {
        self.path.push(key.into());
        self
    }

    fn into_message(self) -> String {
        if self.path.is_empty() {
            return self.problem;
        }
        let path: Vec<String> = self.path.into_iter().rev().collect();
        format!("{}: {}", path.join("."), self.problem)
    }
}

/// Parses one Extended JSON object (canonical or relaxed) into a document. Errors name the
/// offending field by its dotted path.
pub fn parse_document(value: Value) -> Result<Document, String> {
    let Value::Object(_) = value else {
        return Err("a change event must be a JSON object".to_owned());
    };
    match to_bson(value).map_err(Refusal::into_message)? {
        Bson::Document(document) => Ok(document),
        other => Err(format!(
            "expected a document, found {:?}",
            other.element_type()
        )),
    }
}

fn to_bson(value: Value) -> Result<Bson, Refusal> {
    match value {
        Value::Object(object) if object.keys().any(|key| key.starts_with('$')) => {
            if let Some(bson) = common_wrapper(&object) {
                return Ok(bson);
            }
            let value = Value::Object(object);
            check_strict(&value)?;
            Bson::try_from(value).map_err(|e| Refusal::new(format!("invalid Extended JSON: {e}")))
        }
        Value::Object(object) => object
            .into_iter()
            .map(|(key, value)| {
                if key.contains('\0') {
                    return Err(Refusal::new("field names cannot contain NUL".to_owned())
                        .within(key.escape_default().to_string()));
                }
                match to_bson(value) {
                    Ok(bson) => Ok((key, bson)),
                    Err(refusal) => Err(refusal.within(key)),
                }
            })
            .collect::<Result<Document, Refusal>>()
            .map(Bson::Document),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(index, item)| to_bson(item).map_err(|r| r.within(index.to_string())))
            .collect::<Result<Vec<Bson>, Refusal>>()
            .map(Bson::Array),
        scalar => Bson::try_from(scalar).map_err(|e| Refusal::new(format!("invalid number: {e}"))),
    }
}

/// The wrappers found in nearly every document (`$oid`, `$numberInt`, `$numberLong`,
/// `$numberDouble`, `$date` with `$numberLong`), read directly: the crate's general path
/// costs several times more. Returns `None` for anything else, including every invalid
/// value, so the crate's rules and error messages still decide those.
fn common_wrapper(object: &serde_json::Map<String, Value>) -> Option<Bson> {
    if object.len() != 1 {
        return None;
    }
    let (key, value) = object.iter().next()?;
    match (key.as_str(), value) {
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

/// Writes `value` as Extended JSON text in the given encoding.
pub fn write_extjson(out: &mut Vec<u8>, value: &Bson, encoding: Encoding) {
    let canonical = encoding == Encoding::Canonical;
    match value {
        Bson::Document(document) => {
            out.push(b'{');
            for (index, (key, value)) in document.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_extjson(out, value, encoding);
            }
            out.push(b'}');
        }
        Bson::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_extjson(out, item, encoding);
            }
            out.push(b']');
        }
        Bson::String(text) => write_str(out, text),
        Bson::Boolean(true) => out.extend_from_slice(b"true"),
        Bson::Boolean(false) => out.extend_from_slice(b"false"),
        Bson::Null => out.extend_from_slice(b"null"),
        Bson::Int32(number) if canonical => wrapped(out, "$numberInt", &number.to_string()),
        Bson::Int32(number) => write_display(out, number),
        Bson::Int64(number) if canonical => wrapped(out, "$numberLong", &number.to_string()),
        Bson::Int64(number) => write_display(out, number),
        Bson::Double(number) if !canonical && number.is_finite() => {
            // serde_json prints the shortest round-trip form and keeps `.0` on integral
            // values, so relaxed doubles read back as doubles.
            let _ = serde_json::to_writer(&mut *out, number);
        }
        Bson::Double(number) => wrapped(out, "$numberDouble", &double_text(*number)),
        Bson::DateTime(date) => {
            let millis = date.timestamp_millis();
            let iso = (!canonical && (0..YEAR_10000_MS).contains(&millis))
                .then(|| date.try_to_rfc3339_string().ok())
                .flatten();
            match iso {
                Some(iso) => wrapped(out, "$date", &iso),
                None => {
                    out.extend_from_slice(b"{\"$date\":");
                    wrapped(out, "$numberLong", &millis.to_string());
                    out.push(b'}');
                }
            }
        }
        Bson::ObjectId(oid) => wrapped(out, "$oid", &oid.to_hex()),
        Bson::Timestamp(timestamp) => {
            let _ = write!(
                out,
                "{{\"$timestamp\":{{\"t\":{},\"i\":{}}}}}",
                timestamp.time, timestamp.increment
            );
        }
        Bson::JavaScriptCodeWithScope(code) => {
            out.extend_from_slice(b"{\"$code\":");
            write_str(out, &code.code);
            out.extend_from_slice(b",\"$scope\":");
            write_extjson(out, &Bson::Document(code.scope.clone()), encoding);
            out.push(b'}');
        }
        // The same in both encodings and exact in the crate: binary, regex, code,
        // symbol, decimal, undefined, min/max key, DBPointer.
        other => {
            let _ = serde_json::to_writer(&mut *out, &other.clone().into_relaxed_extjson());
        }
    }
}

/// A JSON string, escaped by serde_json (writing to a `Vec` cannot fail).
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(&mut *out, text);
}

fn write_display(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

/// `{"<key>":"<text>"}`
fn wrapped(out: &mut Vec<u8>, key: &str, text: &str) {
    out.push(b'{');
    write_str(out, key);
    out.push(b':');
    write_str(out, text);
    out.push(b'}');
}

/// The shortest text that reads back as the same double, always with a `.` or exponent so
/// it cannot be mistaken for an integer: `1.0`, `-0.0`, `5e-324`, `1.2345678921232e18`.
fn double_text(number: f64) -> String {
    if number.is_nan() {
        "NaN".to_owned()
    } else if number.is_infinite() {
        if number > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .to_owned()
    } else {
        // `Debug` is Rust's shortest round-trip form and keeps `.0` on integral values.
        format!("{number:?}")
    }
}

/// Extended JSON text of `value` (tests, hashing).
pub fn to_extjson_string(value: &Bson, encoding: Encoding) -> String {
    let mut out = Vec::new();
    write_extjson(&mut out, value, encoding);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, DateTime};
    use serde_json::json;

    fn json(value: &Bson, encoding: Encoding) -> Value {
        serde_json::from_str(&to_extjson_string(value, encoding)).expect("valid JSON")
    }

    fn both(value: Bson) -> (Value, Value) {
        (
            json(&value, Encoding::Canonical),
            json(&value, Encoding::Relaxed),
        )
    }

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
    fn strings_and_keys_are_escaped() {
        let value = Bson::Document(doc! {"q\"\n": "a\\b\u{1}é"});
        let text = to_extjson_string(&value, Encoding::Relaxed);
        assert_eq!(text, r#"{"q\"\n":"a\\b\u0001é"}"#);
    }

    #[test]
    fn lenient_inputs_are_refused_with_their_path() {
        let parse = |text: &str| parse_document(serde_json::from_str(text).unwrap_or_default());
        assert_eq!(
            parse(r#"{"a":[{"d":{"$numberDecimal":"E01"}}]}"#),
            Err("a.0.d: $numberDecimal \"E01\" is not a decimal number".to_owned())
        );
        assert!(parse(r#"{"a":{"$date":42}}"#).is_err());
        assert!(parse("{\"a\\u0000\":1}").is_err());
        assert!(parse(r#"{"a":{"$numberDecimal":"1.5E+3"}}"#).is_ok());
        assert!(parse("[1]").is_err());
    }

    #[test]
    fn doubles_keep_type_and_value() {
        assert_eq!(
            both(Bson::Double(5e-324)),
            (json!({"$numberDouble": "5e-324"}), json!(5e-324))
        );
        assert_eq!(both(Bson::Double(-0.0)).0, json!({"$numberDouble": "-0.0"}));
        assert_eq!(
            both(Bson::Double(-f64::NAN)),
            (
                json!({"$numberDouble": "NaN"}),
                json!({"$numberDouble": "NaN"})
            )
        );
        assert_eq!(
            both(Bson::Double(f64::NEG_INFINITY)).1,
            json!({"$numberDouble": "-Infinity"})
        );
        assert_eq!(both(Bson::Double(1.0)).0, json!({"$numberDouble": "1.0"}));
        let text = to_extjson_string(&Bson::Double(1.0), Encoding::Relaxed);
        assert_eq!(text, "1.0", "relaxed integral doubles stay doubles");
        let text = to_extjson_string(&Bson::Double(1e300), Encoding::Relaxed);
        assert_eq!(text.parse::<f64>().ok(), Some(1e300));
    }

    #[test]
    fn dates_outside_the_iso_range_keep_number_long() {
        let after_9999 = DateTime::from_millis(YEAR_10000_MS);
        let before_1970 = DateTime::from_millis(-1);
        let inside = DateTime::from_millis(1_356_351_330_501);
        assert_eq!(
            both(Bson::DateTime(after_9999)).1,
            json!({"$date": {"$numberLong": "253402300800000"}})
        );
        assert_eq!(
            both(Bson::DateTime(before_1970)).1,
            json!({"$date": {"$numberLong": "-1"}})
        );
        assert_eq!(
            both(Bson::DateTime(inside)).1,
            json!({"$date": "2012-12-24T12:15:30.501Z"})
        );
        assert_eq!(
            both(Bson::DateTime(inside)).0,
            json!({"$date": {"$numberLong": "1356351330501"}})
        );
    }

    #[test]
    fn nested_values_and_key_order_are_kept() {
        let value = Bson::Document(doc! {"z": 1_i64, "a": [1_i32, {"$k.x": 2.5}], "m": "s"});
        assert_eq!(
            to_extjson_string(&value, Encoding::Canonical),
            r#"{"z":{"$numberLong":"1"},"a":[{"$numberInt":"1"},{"$k.x":{"$numberDouble":"2.5"}}],"m":"s"}"#
        );
    }
}
