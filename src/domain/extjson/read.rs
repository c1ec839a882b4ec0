//! Reading Extended JSON (canonical or relaxed) into BSON.
//!
//! Objects without `$`-prefixed keys (nearly all of a document) become documents directly
//! while the JSON is parsed; objects with them (type wrappers such as `{"$oid": ..}`,
//! DBRefs, `$`-prefixed field names) are read whole and go through the `bson` crate's own
//! Extended JSON rules, after checks the crate lacks: it reads `$numberDecimal` strings
//! without digits (`"E01"`, `"."`, `""`, `"++1"`) as some number, accepts `{"$date": 42}`,
//! and accepts keys containing NUL, which BSON cannot hold. Such input is refused, naming
//! the field.

use bson::{Bson, Document};
use serde_json::Value;

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
}
