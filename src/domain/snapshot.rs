//! A snapshot event's identity: it has no resume token, so its `eventId` is made here.
//!
//! The `eventId` must sort, as text, before the resume token of every change after the
//! snapshot time S and after every change before it, so "latest record per key by
//! `eventId`" gives the right state wherever snapshot records and changes meet
//! (docs/decisions.md, "Issue #12").

use bson::{doc, Bson, Document, Timestamp};
use sha2::{Digest, Sha256};

use super::change_event::{EventError, Namespace};
use super::extjson::{write_bson_document, Encoding};

/// The snapshot time S and the record's `eventId`, checked from the event's fields:
/// `snapshotTime` must be a Timestamp and `documentKey` must hold an `_id`.
pub(crate) fn snapshot_identity(
    snapshot_time: Option<Bson>,
    ns: &Namespace,
    document_key: &Document,
) -> Result<(String, Timestamp), EventError> {
    let time = match snapshot_time {
        Some(Bson::Timestamp(time)) => time,
        Some(other) => {
            return Err(EventError::wrong_type(
                "snapshotTime",
                "a timestamp",
                &other,
            ))
        }
        None => return Err(EventError::missing("snapshotTime")),
    };
    if !document_key.contains_key("_id") {
        return Err(EventError::missing("documentKey._id"));
    }
    Ok((snapshot_event_id(time, ns, document_key), time))
}

/// `82` + S's `t` and `i` as 8 upper-case hex digits each (a resume token's KeyString
/// prefix for S), `00` (below any byte a real token has after its timestamp), and 32
/// upper-case hex digits of SHA-256 over the canonical Extended JSON of the namespace and
/// key: unique per document and snapshot, and the same for the same event.
fn snapshot_event_id(time: Timestamp, ns: &Namespace, document_key: &Document) -> String {
    let identity = doc! {
        "ns": {"db": ns.db.as_str(), "coll": ns.coll.as_str()},
        "documentKey": document_key.clone(),
    };
    let mut canonical = Vec::new();
    write_bson_document(&mut canonical, &identity, Encoding::Canonical);
    let digest = Sha256::digest(&canonical);
    let mut id = format!("82{:08X}{:08X}00", time.time, time.increment);
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02X}"));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(coll: &str) -> Namespace {
        Namespace {
            db: "shop".to_owned(),
            coll: coll.to_owned(),
        }
    }

    fn at(time: u32, increment: u32) -> Timestamp {
        Timestamp { time, increment }
    }

    fn id(time: Timestamp, key: Document) -> String {
        snapshot_event_id(time, &ns("orders"), &key)
    }

    /// Real-shaped resume tokens: MongoDB's documented insert token, with its timestamp
    /// replaced, and the shorter high-water-mark and end-only shapes.
    fn token(time: Timestamp, rest: &str) -> String {
        format!("82{:08X}{:08X}{rest}", time.time, time.increment)
    }

    const AFTER_TIMESTAMP: [&str; 4] = [
        "2B042C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F463C6F7065726174696F6E54797065003C696E736572740046646F63756D656E744B65790046645F69640064635019A078BE67426D7CF4D2000004",
        "2B022C0100296E5A10046B3F8A2C91D44E0FA7C25B9E13D08F4146645F69640064573A1390F29313CAABCD42E80004",
        "2B0229296E04",
        "04",
    ];

    #[test]
    fn the_event_id_has_the_documented_shape() {
        let event_id = id(at(0x6350_19A0, 7), doc! {"_id": 1});
        assert_eq!(event_id.len(), 2 + 16 + 2 + 32);
        assert!(event_id.starts_with("82635019A00000000700"), "{event_id}");
        assert!(event_id
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    }

    #[test]
    fn sorts_before_changes_at_or_after_s_and_after_changes_before_it() {
        let s = at(1_700_000_000, 5);
        let snapshot = id(s, doc! {"_id": {"$oid": "573a1390f29313caabcd42e8"}});
        let later = [
            s,
            at(s.time, s.increment + 1),
            at(s.time + 1, 0),
            at(0xFFFF_FFFF, 1),
        ];
        let earlier = [at(s.time, s.increment - 1), at(s.time - 1, 0xFFFF_FFFF)];
        for rest in AFTER_TIMESTAMP {
            for time in later {
                assert!(
                    snapshot < token(time, rest),
                    "{snapshot} vs {time:?} {rest}"
                );
            }
            for time in earlier {
                assert!(
                    snapshot > token(time, rest),
                    "{snapshot} vs {time:?} {rest}"
                );
            }
        }
        // A repair at S' > S orders after the first snapshot and the changes between.
        let repair = id(
            at(s.time + 60, 1),
            doc! {"_id": {"$oid": "573a1390f29313caabcd42e8"}},
        );
        assert!(repair > token(at(s.time + 59, 9), AFTER_TIMESTAMP[0]));
        assert!(repair > snapshot);
    }

    #[test]
    fn unique_per_document_namespace_and_snapshot() {
        let s = at(1_700_000_000, 1);
        let ids = [
            id(s, doc! {"_id": 1}),
            id(s, doc! {"_id": 1_i64}),
            id(s, doc! {"_id": "1"}),
            id(s, doc! {"_id": 2}),
            id(s, doc! {"_id": 1, "region": "eu"}),
            id(at(s.time, 2), doc! {"_id": 1}),
            snapshot_event_id(s, &ns("invoices"), &doc! {"_id": 1}),
        ];
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{ids:?}");
        assert_eq!(id(s, doc! {"_id": 1}), ids[0], "deterministic");
    }

    #[test]
    fn snapshot_time_and_id_are_required() {
        let key = doc! {"_id": 1};
        let missing = snapshot_identity(None, &ns("o"), &key).expect_err("no time");
        assert_eq!(missing.field, "snapshotTime");
        let wrong = snapshot_identity(Some(Bson::Int64(5)), &ns("o"), &key).expect_err("int");
        assert_eq!(wrong.field, "snapshotTime");
        assert!(wrong.to_string().contains("must be a timestamp"), "{wrong}");
        let no_id = snapshot_identity(Some(Bson::Timestamp(at(1, 1))), &ns("o"), &doc! {"k": 1})
            .expect_err("no _id");
        assert_eq!(no_id.field, "documentKey._id");
        let (event_id, time) =
            snapshot_identity(Some(Bson::Timestamp(at(9, 2))), &ns("o"), &key).expect("valid");
        assert_eq!(time, at(9, 2));
        assert!(event_id.starts_with("82000000090000000200"));
    }
}
