//! Extended JSON text in, record text out, with no tree in between.
//!
//! A document is read once and written as it is read: ordinary objects, arrays, strings
//! and numbers go straight to the output in the record's encoding, so a document costs
//! its output and nothing more, whatever its shape. (An owned `Bson` tree costs 20-60
//! times the JSON of arrays of small numbers or of many small keys: a 20 MB event needed
//! 1.14 GB.) Only objects whose first key starts with `$` are looked at whole: they are
//! type wrappers (`{"$oid": ..}`, tiny, read by the same rules as [`super::read`]), or
//! documents with `$`-prefixed field names, which are then streamed field by field.
//!
//! The rules are the `bson` crate's, checked against it by property tests: an object that
//! holds a wrapper key (`$oid`, `$date`, ... see [`WRAPPER_KEYS`]) is that wrapper and
//! nothing else; any other object is a document.

use std::borrow::Cow;
use std::fmt;

use bson::Bson;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::read::{
    count_values_within, dollar_object_to_bson, relaxed_integer, relaxed_unsigned, Context,
};
use super::write::{write_extjson, write_str};
use super::{Encoding, ExtJsonError};

/// Keys that make an object a type wrapper in the `bson` crate's reader.
const WRAPPER_KEYS: [&str; 16] = [
    "$oid",
    "$symbol",
    "$regularExpression",
    "$numberInt",
    "$numberLong",
    "$numberDouble",
    "$numberDecimal",
    "$binary",
    "$uuid",
    "$code",
    "$timestamp",
    "$date",
    "$minKey",
    "$maxKey",
    "$dbPointer",
    "$undefined",
];

/// A wrapper is a handful of values; more means it is not one, and reading it whole
/// must not cost memory out of proportion (`$scope`, the one wrapper part that is a
/// document, is streamed instead).
const MAX_WRAPPER_VALUES: usize = 64;

/// Members taken as text before an object that starts like a wrapper is decided: a
/// wrapper has one or two (a repeated key counts again, as the crate reads the last).
const MAX_WRAPPER_MEMBERS: usize = 8;

/// A JSON object from a request body that is written to the lake as a document. Its
/// Extended JSON is checked as it is written ([`write_document`]), once.
#[derive(Debug, Clone, Copy)]
pub struct JsonDocument<'b>(&'b RawValue);

impl<'b> JsonDocument<'b> {
    /// `Some` for a JSON object, `None` for `null`; anything else is not a document.
    pub fn from_raw(raw: &'b RawValue) -> Result<Option<JsonDocument<'b>>, ExtJsonError> {
        match raw.get().as_bytes().first() {
            Some(b'{') => Ok(Some(JsonDocument(raw))),
            Some(b'n') => Ok(None),
            _ => Err(ExtJsonError::new("must be a document (a JSON object)")),
        }
    }

    /// The document's JSON text as it arrived.
    pub fn as_str(&self) -> &'b str {
        self.0.get()
    }
}

/// Writes `document` as Extended JSON in `encoding`, refusing what is not Extended JSON
/// or not a document. On error, `out` holds a partial write.
pub fn write_document(
    out: &mut Vec<u8>,
    document: JsonDocument<'_>,
    encoding: Encoding,
) -> Result<(), ExtJsonError> {
    let context = Context::default();
    match transcode(out, document.0, encoding, &context) {
        Ok(Written::Document) => Ok(()),
        Ok(Written::Other) => Err(ExtJsonError::new(
            "must be a document, not an Extended JSON type wrapper",
        )),
        Err(error) => Err(context.into_error(error)),
    }
}

/// What a value turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Document,
    Other,
}

fn transcode(
    out: &mut Vec<u8>,
    raw: &RawValue,
    encoding: Encoding,
    context: &Context,
) -> Result<Written, serde_json::Error> {
    let _reread = context.reread()?;
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    Transcode {
        out,
        encoding,
        context,
    }
    .deserialize(&mut deserializer)
}

/// Writes one value to `out` as it is read.
struct Transcode<'o, 'c> {
    out: &'o mut Vec<u8>,
    encoding: Encoding,
    context: &'c Context,
}

impl Transcode<'_, '_> {
    fn scalar(self, value: &Bson) -> Written {
        write_extjson(self.out, value, self.encoding);
        Written::Other
    }

    fn reborrow(&mut self) -> Transcode<'_, '_> {
        Transcode {
            out: self.out,
            encoding: self.encoding,
            context: self.context,
        }
    }

    /// One `"key":value` member of a document being written.
    fn member<'de, A: MapAccess<'de>>(
        &mut self,
        first: bool,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        check_key(key, self.context)?;
        if !first {
            self.out.push(b',');
        }
        write_str(self.out, key);
        self.out.push(b':');
        map.next_value_seed(self.reborrow())
            .inspect_err(|_| self.context.within(key))?;
        Ok(())
    }

    /// A further member of a document being streamed: a wrapper key would have made the
    /// object a wrapper, which has no other fields (the `bson` crate refuses it too).
    fn document_member<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        if is_wrapper_key(key) {
            self.context.within(key);
            return Err(de::Error::custom(format!(
                "invalid Extended JSON: {key} makes the object a type wrapper, which has no other fields"
            )));
        }
        self.member(false, key, map)
    }

    /// An object whose first key is a wrapper key (or `$scope`, which may precede `$code`):
    /// a wrapper, or (when no wrapper key turns up) a document. A wrapper has one or two
    /// members, so a few are taken as text before anything is written; past that many
    /// without a wrapper key the object is a document, and the rest is streamed.
    fn wrapper_object<'de, A: MapAccess<'de>>(
        mut self,
        first: Key<'de>,
        mut map: A,
    ) -> Result<Written, A::Error> {
        let mut members: Vec<(Key<'de>, &'de RawValue)> = vec![(first, map.next_value()?)];
        let has_wrapper_key = |members: &[(Key<'de>, &'de RawValue)]| {
            members.iter().any(|(key, _)| is_wrapper_key(key))
        };
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if members.len() < MAX_WRAPPER_MEMBERS {
                let value = map.next_value()?;
                members.push((key, value));
                continue;
            }
            if has_wrapper_key(&members) || is_wrapper_key(&key) {
                self.context.within(key.as_ref());
                return Err(de::Error::custom(
                    "invalid Extended JSON: a type wrapper has one or two fields",
                ));
            }
            // A document after all: what was taken first, then the rest as it comes.
            self.members_from_text(&members)
                .map_err(de::Error::custom)?;
            self.member(false, &key, &mut map)?;
            while let Some(key) = map.next_key_seed(KeySeed)? {
                self.document_member(&key, &mut map)?;
            }
            self.out.push(b'}');
            return Ok(Written::Document);
        }
        let Some(wrapper) = members
            .iter()
            .find(|(key, _)| is_wrapper_key(key))
            .map(|(key, _)| key.clone())
        else {
            self.members_from_text(&members)
                .map_err(de::Error::custom)?;
            self.out.push(b'}');
            return Ok(Written::Document);
        };
        let scope = members
            .iter()
            .find(|(key, value)| key == "$scope" && value.get() != "null");
        if let (true, Some((_, scope))) = (wrapper == "$code", scope) {
            self.code_with_scope(&members, scope)
                .map_err(de::Error::custom)?;
            return Ok(Written::Other);
        }
        let values: usize = members
            .iter()
            .map(|(_, value)| count_values_within(value.get(), MAX_WRAPPER_VALUES + 1))
            .sum();
        if values > MAX_WRAPPER_VALUES {
            self.context.within(wrapper.as_ref());
            return Err(de::Error::custom(format!(
                "invalid Extended JSON: a {wrapper} wrapper holds a few values, not {values} or more"
            )));
        }
        let mut object = Map::new();
        for (key, value) in members {
            let value: Value = serde_json::from_str(value.get()).map_err(de::Error::custom)?;
            object.insert(key.into_owned(), value);
        }
        let bson = dollar_object_to_bson(object, self.context).map_err(de::Error::custom)?;
        let written = match bson {
            Bson::Document(_) => Written::Document,
            _ => Written::Other,
        };
        write_extjson(self.out, &bson, self.encoding);
        Ok(written)
    }

    /// `{` and the members of a document taken as text (their keys are names, whatever
    /// they are), each value transcoded on its own; the caller closes it.
    fn members_from_text(
        &mut self,
        members: &[(Key<'_>, &RawValue)],
    ) -> Result<(), serde_json::Error> {
        self.out.push(b'{');
        for (index, (key, value)) in members.iter().enumerate() {
            check_key(key, self.context)?;
            if index > 0 {
                self.out.push(b',');
            }
            write_str(self.out, key);
            self.out.push(b':');
            transcode(self.out, value, self.encoding, self.context)
                .inspect_err(|_| self.context.within(key.as_ref()))?;
        }
        Ok(())
    }

    /// `{"$code": "...", "$scope": {...}}`, written as [`write_extjson`] writes it (the
    /// same in both encodings); the scope is a document whatever its keys, as in the crate.
    fn code_with_scope(
        &mut self,
        members: &[(Key<'_>, &RawValue)],
        scope: &RawValue,
    ) -> Result<(), serde_json::Error> {
        let code = members.iter().find(|(key, _)| key == "$code");
        let Some((_, code)) = code.filter(|_| members.len() == 2) else {
            return Err(de::Error::custom(
                "invalid Extended JSON: code with scope has exactly the keys $code and $scope",
            ));
        };
        let code: Cow<str> = serde_json::from_str(code.get()).map_err(|_| {
            self.context.within("$code");
            de::Error::custom("invalid Extended JSON: $code must be a string")
        })?;
        let scope_members = serde_json::from_str::<ScopeMembers>(scope.get()).map_err(|_| {
            self.context.within("$scope");
            de::Error::custom("invalid Extended JSON: $scope must be a document")
        })?;
        self.out.extend_from_slice(b"{\"$code\":");
        write_str(self.out, &code);
        self.out.extend_from_slice(b",\"$scope\":");
        self.members_from_text(&scope_members.0)
            .inspect_err(|_| self.context.within("$scope"))?;
        self.out.extend_from_slice(b"}}");
        Ok(())
    }
}

fn is_wrapper_key(key: &str) -> bool {
    WRAPPER_KEYS.contains(&key)
}

fn check_key<E: de::Error>(key: &str, context: &Context) -> Result<(), E> {
    if key.contains('\0') {
        context.within(key.escape_default().to_string());
        return Err(de::Error::custom("field names cannot contain NUL"));
    }
    Ok(())
}

impl<'de> DeserializeSeed<'de> for Transcode<'_, '_> {
    type Value = Written;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Written, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Transcode<'_, '_> {
    type Value = Written;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an Extended JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Written, E> {
        Ok(self.scalar(&Bson::Boolean(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Written, E> {
        Ok(self.scalar(&relaxed_integer(value)))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Written, E> {
        Ok(self.scalar(&relaxed_unsigned(value)))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Written, E> {
        Ok(self.scalar(&Bson::Double(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Written, E> {
        write_str(self.out, value);
        Ok(Written::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Written, E> {
        Ok(self.scalar(&Bson::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Written, A::Error> {
        let _level = self.context.enter()?;
        self.out.push(b'[');
        let mut count = 0usize;
        loop {
            let mark = self.out.len();
            if count > 0 {
                self.out.push(b',');
            }
            match seq.next_element_seed(self.reborrow()) {
                Ok(Some(_)) => count += 1,
                Ok(None) => {
                    self.out.truncate(mark);
                    break;
                }
                Err(error) => {
                    self.context.within(count.to_string());
                    return Err(error);
                }
            }
        }
        self.out.push(b']');
        Ok(Written::Other)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Written, A::Error> {
        let _level = self.context.enter()?;
        let Some(first) = map.next_key_seed(KeySeed)? else {
            self.out.extend_from_slice(b"{}");
            return Ok(Written::Document);
        };
        if is_wrapper_key(&first) || first == "$scope" {
            return self.wrapper_object(first, map);
        }
        // A document (a wrapper key met later is an error), written as it is read.
        self.out.push(b'{');
        self.member(true, &first, &mut map)?;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            self.document_member(&key, &mut map)?;
        }
        self.out.push(b'}');
        Ok(Written::Document)
    }
}

/// A field name, borrowed from the body unless it had escapes.
type Key<'de> = Cow<'de, str>;

/// Reads a key without copying it when the JSON allows.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
        Ok(Cow::Owned(key.to_owned()))
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<Key<'de>, E> {
        Ok(Cow::Owned(key))
    }
}

/// The members of a `$scope` document, as text.
struct ScopeMembers<'de>(Vec<(Key<'de>, &'de RawValue)>);

impl<'de> de::Deserialize<'de> for ScopeMembers<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = ScopeMembers<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a document")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key_seed(KeySeed)? {
                    members.push((key, map.next_value()?));
                }
                Ok(ScopeMembers(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::extjson::read::MAX_FIELD_VALUES;
    use bson::Document;

    /// Our reading of `text` as a document: written canonical (lossless) and read back
    /// by the crate.
    fn ours(text: &str) -> Result<Document, ExtJsonError> {
        let raw: &RawValue = serde_json::from_str(text).expect("test input is JSON");
        let document = JsonDocument::from_raw(raw)?.ok_or_else(|| ExtJsonError::new("null"))?;
        let mut out = Vec::new();
        write_document(&mut out, document, Encoding::Canonical)?;
        let value: Value = serde_json::from_slice(&out).expect("output is JSON");
        match Bson::try_from(value) {
            Ok(Bson::Document(document)) => Ok(document),
            other => panic!("output reads back as a document: {other:?}"),
        }
    }

    /// The metadata reader's reading of `text`.
    fn as_field(text: &str) -> Result<Bson, ExtJsonError> {
        let raw: &RawValue = serde_json::from_str(text).expect("test input is JSON");
        super::super::read::read_value(raw)
    }

    #[test]
    fn lenient_inputs_are_refused_with_their_path() {
        let parse = ours;
        let detail = parse(r#"{"a":[{"d":{"$numberDecimal":"E01"}}]}"#)
            .expect_err("refused")
            .to_string();
        assert!(
            detail.starts_with("a.0.d: $numberDecimal \"E01\" is not a decimal number"),
            "{detail}"
        );
        assert!(parse(r#"{"a":{"$date":42}}"#).is_err());
        assert!(parse(r#"{"a":{"$date":"1969-12-31T23:59:59.9995Z"}}"#).is_err());
        assert!(parse(r#"{"a":{"$date":"2012-12-24T12:15:30.501+01:00"}}"#).is_ok());
        assert!(parse("{\"a\\u0000\":1}").is_err());
        assert!(parse(r#"{"b":{"c":{"x\u0000":1}}}"#).is_err());
        assert!(parse(r#"{"a":{"$numberDecimal":"1.5E+3"}}"#).is_ok());
        assert!(JsonDocument::from_raw(serde_json::from_str("[1]").expect("JSON")).is_err());
        assert!(parse(r#"{"$oid":"573a1390f29313caabcd4135"}"#).is_err());
    }

    #[test]
    fn values_read_like_the_bson_crate_reads_them() {
        // The streaming reader and the crate's own reader agree, wrappers and all.
        let agree = |text: &str| {
            let theirs = serde_json::from_str::<Value>(text).map(Bson::try_from);
            let field = as_field(text);
            match (ours(text), theirs) {
                (Ok(ours), Ok(Ok(Bson::Document(theirs)))) => {
                    assert_eq!(ours, theirs, "{text}");
                    assert_eq!(field.ok(), Some(Bson::Document(theirs)), "{text}");
                }
                (Err(_), Ok(Err(_))) => assert!(field.is_err(), "{text}"),
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
        assert!(ours(r#"{"x":{"y":1,"$numberInt":"5"}}"#).is_err());
        // Documents with `$`-prefixed names, code with scope, and wrappers inside them.
        agree(r#"{"q":{"$gt":1,"$lt":{"$numberLong":"5"}},"n":{"$type":"string"}}"#);
        agree(r#"{"c":{"$code":"f()","$scope":{"x":{"$numberLong":"1"},"$oid":"y"}}}"#);
        agree(r#"{"c":{"$scope":{"x":1},"$code":"f()"}}"#);
        agree(r#"{"c":{"$code":"f()","$scope":null}}"#);
        agree(r#"{"c":{"$code":"f()","$scope":[1]}}"#);
        agree(r#"{"c":{"$code":1,"$scope":{}}}"#);
        agree(r#"{"c":{"$code":"f()","$scope":{},"x":1}}"#);
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
                let theirs = serde_json::from_str::<Value>(&text).map(Bson::try_from);
                match (ours(&text), theirs) {
                    (Ok(ours), Ok(Ok(Bson::Document(theirs)))) => {
                        prop_assert_eq!(bytes(&ours), bytes(&theirs), "{}", text)
                    }
                    (Err(_), Ok(Err(_))) => {}
                    (ours, theirs) => prop_assert!(false, "disagree on {}: {:?} vs {:?}", text, ours, theirs),
                }
            }
        }
    }

    #[test]
    fn shapes_cost_their_output_not_a_tree() {
        // A long array of small numbers: written as it is read (no per-element tree), in
        // both encodings; the output is all that is kept.
        let text = format!("{{\"a\":[{}0]}}", "0,".repeat(100_000));
        let raw: &RawValue = serde_json::from_str(&text).expect("JSON");
        let document = JsonDocument::from_raw(raw)
            .expect("object")
            .expect("not null");
        let mut relaxed = Vec::new();
        write_document(&mut relaxed, document, Encoding::Relaxed).expect("valid");
        assert_eq!(relaxed, text.as_bytes());
        let mut canonical = Vec::new();
        write_document(&mut canonical, document, Encoding::Canonical).expect("valid");
        assert!(canonical.starts_with(br#"{"a":[{"$numberInt":"0"},{"$numberInt":"0"}"#));
    }

    #[test]
    fn big_fields_and_wrappers_are_refused_before_they_are_read_whole() {
        let big = format!("{{\"_id\":[{}0]}}", "0,".repeat(MAX_FIELD_VALUES));
        let error = as_field(&big).expect_err("too many values for a metadata field");
        assert!(error.to_string().contains("more than"), "{error}");
        let wrapper = format!("{{\"a\":{{\"$date\":[{}0]}}}}", "0,".repeat(1000));
        let error = ours(&wrapper).expect_err("not a date");
        assert!(error.to_string().starts_with("a.$date: "), "{error}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // (opening, closing, a depth that is fine)
        for (open, close, fine) in [
            (r#"{"$a":"#, "}", 100),
            (r#"{"$code":"f","$scope":{"a":"#, "}}", 10),
            (r#"{"$scope":{"a":"#, "}}", 10),
            (r#"{"a":"#, "}", 100),
            ("[", "]", 100),
        ] {
            let text = format!(
                r#"{{"x":{}1{}}}"#,
                open.repeat(20_000),
                close.repeat(20_000)
            );
            let error = ours(&text).expect_err("too deep");
            assert!(
                error.to_string().contains("levels deep")
                    || error.to_string().contains("recursion limit"),
                "{open}: {error}"
            );
            // Up to MongoDB's own limit of 100 levels is fine (code with scope in code with
            // scope: a few).
            let text = format!(r#"{{"x":{}1{}}}"#, open.repeat(fine), close.repeat(fine));
            assert!(ours(&text).is_ok(), "{open}");
        }
    }

    #[test]
    fn objects_that_start_like_wrappers_but_grow_are_documents_or_errors() {
        let agree = |text: &str| {
            let theirs = serde_json::from_str::<Value>(text).map(Bson::try_from);
            match (ours(text), theirs) {
                (Ok(ours), Ok(Ok(Bson::Document(theirs)))) => assert_eq!(ours, theirs, "{text}"),
                (Err(_), Ok(Err(_))) => {}
                (ours, theirs) => panic!("disagree on {text}: {ours:?} vs {theirs:?}"),
            }
        };
        let many: String = (0..20).map(|i| format!(r#","k{i}":{i}"#)).collect();
        agree(&format!(r#"{{"d":{{"$scope":{{"x":1}}{many}}}}}"#));
        agree(&format!(
            r#"{{"d":{{"$scope":{{"x":1}}{many},"$oid":"573a1390f29313caabcd4135"}}}}"#
        ));
        agree(&format!(
            r#"{{"d":{{"$oid":"573a1390f29313caabcd4135"{many}}}}}"#
        ));
        agree(&format!(r#"{{"d":{{"$":0{many}}}}}"#));
        agree(&format!(r#"{{"d":{{"$":0{many},"$date":1}}}}"#));
        agree(r#"{"d":{"$oid":"573a1390f29313caabcd4135","$oid":"573a1390f29313caabcd4136"}}"#);
    }

    #[test]
    fn value_counts_skip_strings() {
        assert_eq!(count_values_within("1", 100), 1);
        assert_eq!(count_values_within(r#"[1,2,{"a":"x,[{"}]"#, 100), 5);
        assert_eq!(count_values_within(r#""a\"[,""#, 100), 1);
        assert_eq!(count_values_within("[0,0,0,0,0]", 3), 3);
    }
}
