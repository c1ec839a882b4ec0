//! Extended JSON output that keeps every BSON value exact.
//!
//! The `bson` crate's own writers are close but not exact: its canonical form writes
//! subnormal doubles (`5e-324`) as bare JSON numbers, which read back as a different
//! type in strict readers, prints negative NaN as `-NaN` (not Extended JSON), and decides
//! whether a date fits the relaxed ISO form through a calendar conversion that clamps at
//! year 9999 unless built with `large_dates`. This module handles the numeric and date
//! types and recursion itself and defers to the crate for the rest (binary, regex,
//! ObjectId, ...), whose output is already exact.

use bson::{Bson, Document};
use serde_json::{Map, Number, Value};

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

/// Parses one Extended JSON object (canonical or relaxed) into a document.
///
/// The `bson` crate is lenient where the Extended JSON spec is strict, in ways that would
/// silently change a value: it reads `$numberDecimal` strings without digits (`"E01"`,
/// `"."`, `""`, `"++1"`) as some number, and accepts keys containing NUL, which BSON
/// cannot hold. Such input is refused here, naming the field, before the crate sees it.
pub fn parse_document(value: Value) -> Result<Document, String> {
    if !value.is_object() {
        return Err("a change event must be a JSON object".to_owned());
    }
    check_strict(&value).map_err(|(path, problem)| match path.is_empty() {
        true => problem,
        false => format!("{path}: {problem}"),
    })?;
    match Bson::try_from(value) {
        Ok(Bson::Document(document)) => Ok(document),
        Ok(other) => Err(format!(
            "expected a document, found {:?}",
            other.element_type()
        )),
        Err(error) => Err(format!("invalid Extended JSON: {error}")),
    }
}

/// Finds what the crate would accept but the spec forbids; returns the dotted path of the
/// offending field and the problem.
fn check_strict(value: &Value) -> Result<(), (String, String)> {
    let nested = |key: &str, inner: &Value| {
        check_strict(inner).map_err(|(path, problem)| match path.is_empty() {
            true => (key.to_owned(), problem),
            false => (format!("{key}.{path}"), problem),
        })
    };
    match value {
        Value::Object(object) => {
            if let Some(decimal) = object.get("$numberDecimal").and_then(Value::as_str) {
                if !is_decimal_string(decimal) {
                    return Err((
                        String::new(),
                        format!("$numberDecimal {decimal:?} is not a decimal number"),
                    ));
                }
            }
            if object.get("$date").is_some_and(Value::is_number) {
                return Err((
                    String::new(),
                    "$date must be a string or {\"$numberLong\": ...}".to_owned(),
                ));
            }
            for (key, inner) in object {
                if key.contains('\0') {
                    return Err((
                        key.escape_default().to_string(),
                        "field names cannot contain NUL".to_owned(),
                    ));
                }
                nested(key, inner)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                nested(&index.to_string(), item)?;
            }
            Ok(())
        }
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

/// Converts a BSON value into Extended JSON in the given encoding.
pub fn to_extjson(value: Bson, encoding: Encoding) -> Value {
    let canonical = encoding == Encoding::Canonical;
    match value {
        Bson::Document(document) => Value::Object(
            document
                .into_iter()
                .map(|(key, value)| (key, to_extjson(value, encoding)))
                .collect(),
        ),
        Bson::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| to_extjson(item, encoding))
                .collect(),
        ),
        Bson::JavaScriptCodeWithScope(code) => {
            let mut object = Map::with_capacity(2);
            object.insert("$code".to_owned(), Value::String(code.code));
            object.insert(
                "$scope".to_owned(),
                to_extjson(Bson::Document(code.scope), encoding),
            );
            Value::Object(object)
        }
        Bson::Double(number) => double(number, canonical),
        Bson::Int32(number) if canonical => wrapped("$numberInt", number.to_string()),
        Bson::Int32(number) => Value::Number(number.into()),
        Bson::Int64(number) if canonical => wrapped("$numberLong", number.to_string()),
        Bson::Int64(number) => Value::Number(number.into()),
        Bson::DateTime(date) => {
            let millis = date.timestamp_millis();
            let iso = if !canonical && (0..YEAR_10000_MS).contains(&millis) {
                date.try_to_rfc3339_string().ok()
            } else {
                None
            };
            match iso {
                Some(iso) => wrapped("$date", iso),
                None => {
                    let long = wrapped("$numberLong", millis.to_string());
                    let mut object = Map::with_capacity(1);
                    object.insert("$date".to_owned(), long);
                    Value::Object(object)
                }
            }
        }
        // Everything else is the same in both encodings and exact in the crate.
        other => other.into_relaxed_extjson(),
    }
}

fn double(number: f64, canonical: bool) -> Value {
    if !canonical && number.is_finite() {
        if let Some(json) = Number::from_f64(number) {
            return Value::Number(json);
        }
    }
    wrapped("$numberDouble", double_text(number))
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

fn wrapped(key: &str, text: String) -> Value {
    let mut object = Map::with_capacity(1);
    object.insert(key.to_owned(), Value::String(text));
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, DateTime};
    use serde_json::json;

    fn both(value: Bson) -> (Value, Value) {
        (
            to_extjson(value.clone(), Encoding::Canonical),
            to_extjson(value, Encoding::Relaxed),
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
        let text = serde_json::to_string(&both(Bson::Double(1.0)).1).unwrap_or_default();
        assert_eq!(text, "1.0", "relaxed integral doubles stay doubles");
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
        let canonical = to_extjson(value, Encoding::Canonical);
        assert_eq!(
            serde_json::to_string(&canonical).unwrap_or_default(),
            r#"{"z":{"$numberLong":"1"},"a":[{"$numberInt":"1"},{"$k.x":{"$numberDouble":"2.5"}}],"m":"s"}"#
        );
    }
}
