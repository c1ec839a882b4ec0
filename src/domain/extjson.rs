//! Extended JSON output that keeps every BSON value exact.
//!
//! The `bson` crate's own writers are close but not exact: its canonical form writes
//! subnormal doubles (`5e-324`) as bare JSON numbers, which read back as a different
//! type in strict readers, prints negative NaN as `-NaN` (not Extended JSON), and decides
//! whether a date fits the relaxed ISO form through a calendar conversion that clamps at
//! year 9999 unless built with `large_dates`. This module handles the numeric and date
//! types and recursion itself and defers to the crate for the rest (binary, regex,
//! ObjectId, ...), whose output is already exact.

use bson::Bson;
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
