//! Writing BSON as Extended JSON text.
//!
//! The `bson` crate's own writers are close but not exact: its canonical form writes
//! subnormal doubles (`5e-324`) as bare JSON numbers, prints negative NaN as `-NaN` (not
//! Extended JSON), and decides whether a date fits the relaxed ISO form through a calendar
//! conversion that clamps at year 9999 unless built with `large_dates`. Text is written
//! straight from BSON here; rare types (binary, regex, symbol, ...) reuse the crate's exact
//! output.

use std::io::Write;

use bson::{Bson, Document};

use super::Encoding;

/// Milliseconds of 10000-01-01T00:00:00Z: relaxed dates from here on keep `$numberLong`.
const YEAR_10000_MS: i64 = 253_402_300_800_000;
/// Writes `value` as Extended JSON text in the given encoding.
pub fn write_extjson(out: &mut Vec<u8>, value: &Bson, encoding: Encoding) {
    let canonical = encoding == Encoding::Canonical;
    match value {
        Bson::Document(document) => write_bson_document(out, document, encoding),
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
            write_bson_document(out, &code.scope, encoding);
            out.push(b'}');
        }
        // The same in both encodings and exact in the crate: binary, regex, code,
        // symbol, decimal, undefined, min/max key, DBPointer.
        other => {
            let _ = serde_json::to_writer(&mut *out, &other.clone().into_relaxed_extjson());
        }
    }
}

/// Writes a BSON document as Extended JSON text in the given encoding.
pub fn write_bson_document(out: &mut Vec<u8>, document: &Document, encoding: Encoding) {
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
    use serde_json::Value;

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
    fn strings_and_keys_are_escaped() {
        let value = Bson::Document(doc! {"q\"\n": "a\\b\u{1}é"});
        let text = to_extjson_string(&value, Encoding::Relaxed);
        assert_eq!(text, r#"{"q\"\n":"a\\b\u0001é"}"#);
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
