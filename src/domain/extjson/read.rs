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
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::ExtJsonError;

/// Values (scalars, arrays, objects) one event field read into a tree may hold. The
/// fields read whole (the resume token, `ns`, `documentKey`, times) hold a few; a bound
/// keeps a hostile one from costing memory out of proportion to its size.
pub const MAX_FIELD_VALUES: usize = 10_000;

/// Reads one small Extended JSON value (an event's metadata field) into BSON.
pub fn read_value(raw: &RawValue) -> Result<Bson, ExtJsonError> {
    let values = count_values_within(raw.get(), MAX_FIELD_VALUES + 1);
    if values > MAX_FIELD_VALUES {
        return Err(ExtJsonError::new(format!(
            "holds more than {MAX_FIELD_VALUES} values; this field is small in a change event"
        )));
    }
    let context = Context::default();
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    ValueSeed(&context)
        .deserialize(&mut deserializer)
        .map_err(|error| context.into_error(error))
}

/// A relaxed JSON integer as the Extended JSON spec and the `bson` crate read it: Int32
/// when it fits, else Int64.
pub(super) fn relaxed_integer(value: i64) -> Bson {
    i32::try_from(value).map_or(Bson::Int64(value), Bson::Int32)
}

/// A JSON integer beyond `i64` is a Double, as in the crate.
pub(super) fn relaxed_unsigned(value: u64) -> Bson {
    i64::try_from(value).map_or(Bson::Double(value as f64), relaxed_integer)
}

/// About how many values `json` holds (one, plus one per array, object and separator
/// outside strings), counting up to `limit`: a scan, no parsing. `json` is valid JSON.
pub(super) fn count_values_within(json: &str, limit: usize) -> usize {
    let mut count = 1;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_string = true;
        } else if matches!(byte, b'{' | b'[' | b',') {
            count += 1;
            if count >= limit {
                break;
            }
        }
    }
    count
}

/// Arrays and objects one document may nest. serde_json counts depth per parser, and a
/// document is sometimes read by several in turn (members of `$`-led objects are read from
/// their text), so the depth is counted here too: deep nesting must be an error, never a
/// stack overflow that takes the process down. (MongoDB itself allows 100 levels.)
pub(super) const MAX_DEPTH: usize = 128;

/// Values read again from their text inside one another (members of `$`-led objects that
/// hold more of them). Each such level costs far more stack than a plain one, so they
/// have a bound of their own; documents never nest them (wrappers are leaves, and `$scope`
/// in `$scope` is a curiosity).
pub(super) const MAX_REREAD_DEPTH: usize = 16;

/// State shared by the visitors of one read. Costs nothing until something fails.
#[derive(Default)]
pub(super) struct Context {
    /// The failing field's path, innermost part first, filled in as the error unwinds.
    path: RefCell<Vec<String>>,
    /// Arrays and objects open now.
    depth: Cell<usize>,
    /// Values being read again from their text, one inside another.
    rereads: Cell<usize>,
}

/// One level of nesting, left when dropped.
pub(super) struct Level<'c>(&'c Cell<usize>);

impl Drop for Level<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

fn enter<E: de::Error>(counter: &Cell<usize>, limit: usize) -> Result<Level<'_>, E> {
    let depth = counter.get() + 1;
    if depth > limit {
        return Err(E::custom(format!("nested more than {limit} levels deep")));
    }
    counter.set(depth);
    Ok(Level(counter))
}

impl Context {
    /// Enters an array or object, refusing nesting deeper than [`MAX_DEPTH`].
    pub(super) fn enter<E: de::Error>(&self) -> Result<Level<'_>, E> {
        enter(&self.depth, MAX_DEPTH)
    }

    /// Starts reading a value again from its text, refusing more than
    /// [`MAX_REREAD_DEPTH`] such reads inside one another.
    pub(super) fn reread<E: de::Error>(&self) -> Result<Level<'_>, E> {
        enter(&self.rereads, MAX_REREAD_DEPTH)
    }

    pub(super) fn within(&self, part: impl Into<String>) {
        self.path.borrow_mut().push(part.into());
    }

    pub(super) fn into_error(self, error: serde_json::Error) -> ExtJsonError {
        let mut path = self.path.into_inner();
        path.reverse();
        ExtJsonError {
            path,
            problem: error.to_string(),
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
        Ok(relaxed_integer(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Bson, E> {
        Ok(relaxed_unsigned(value))
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
        let mut object = Map::new();
        for (name, value) in before {
            let text = super::to_extjson_string(&value, super::Encoding::Canonical);
            object.insert(
                name,
                serde_json::from_str(&text).map_err(de::Error::custom)?,
            );
        }
        object.insert(key, value);
        while let Some((name, value)) = map.next_entry::<String, Value>()? {
            object.insert(name, value);
        }
        dollar_object_to_bson(object, self.0).map_err(de::Error::custom)
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

/// An object with a `$`-prefixed key, by the Extended JSON rules: a type wrapper, or a
/// document. On refusal, the path inside the object goes into `context` and the problem
/// is returned.
pub(super) fn dollar_object_to_bson(
    object: Map<String, Value>,
    context: &Context,
) -> Result<Bson, String> {
    if object.len() == 1 {
        if let Some(bson) = object
            .iter()
            .next()
            .and_then(|(key, value)| common_wrapper(key, value))
        {
            return Ok(bson);
        }
    }
    let value = Value::Object(object);
    let checked = check_strict(&value).and_then(|()| {
        Bson::try_from(value).map_err(|e| Refusal::new(format!("invalid Extended JSON: {e}")))
    });
    checked.map_err(|refusal| {
        context.path.borrow_mut().extend(refusal.path);
        refusal.problem
    })
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
}
