//! The landing zone's layout (Microsoft's "Open mirroring landing zone format"): one folder
//! per table, `<schema>.schema/<table>/`, holding `_metadata.json` and data files named by
//! 20 digits. Fabric moves processed files to `_ProcessedFiles/`.

use super::state::TableKey;
use crate::domain::{short_hash, LakePath, Segment};

/// `_metadata.json`: the key column (MongoDB's `_id`, as text).
pub const METADATA: &[u8] = br#"{"keyColumns":["_id"]}"#;

/// Paths inside one landing zone.
#[derive(Debug, Clone)]
pub struct LandingPaths {
    directory: Vec<Segment>,
}

impl LandingPaths {
    pub fn new(directory: Vec<Segment>) -> LandingPaths {
        LandingPaths { directory }
    }

    /// `<db>.schema/<coll>`, each name made acceptable to Fabric ([`fabric_name`]).
    pub fn table_folder(&self, table: &TableKey) -> Vec<Segment> {
        let mut folder = self.directory.clone();
        folder.push(Segment::assemble(format!(
            "{}.schema",
            fabric_name(&table.db)
        )));
        folder.push(Segment::assemble(fabric_name(&table.coll)));
        folder
    }

    /// The table's name as Fabric shows it (`<schema>.<table>`), for logs and summaries.
    pub fn table_name(table: &TableKey) -> String {
        format!("{}.{}", fabric_name(&table.db), fabric_name(&table.coll))
    }

    fn file(&self, table: &TableKey, prefix: Option<&str>, name: String) -> LakePath {
        let mut segments = self.table_folder(table);
        if let Some(prefix) = prefix {
            segments.push(Segment::assemble(prefix.to_owned()));
        }
        segments.push(Segment::assemble(name));
        LakePath::new(segments).unwrap_or_else(|| unreachable!("a path with a name"))
    }

    pub fn metadata(&self, table: &TableKey) -> LakePath {
        self.file(table, None, "_metadata.json".to_owned())
    }

    /// `<20 digits>.parquet`.
    pub fn data_file(&self, table: &TableKey, number: u64) -> LakePath {
        self.file(table, None, format!("{number:020}.parquet"))
    }

    /// Where Fabric puts a data file once it has applied it.
    pub fn processed_file(&self, table: &TableKey, number: u64) -> LakePath {
        self.file(
            table,
            Some("_ProcessedFiles"),
            format!("{number:020}.parquet"),
        )
    }
}

/// A database or collection name (as encoded in the change files' folders) as a Fabric
/// schema or table name: ASCII letters, digits, `_` and `-` are kept; a name with anything
/// else has it replaced by `_` and gets `_` plus 8 hex digits of a hash of the encoded
/// name, so two collections never share a table.
pub fn fabric_name(encoded: &Segment) -> String {
    let text = encoded.as_str();
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean == text {
        clean
    } else {
        format!("{clean}_{}", &short_hash(text.as_bytes())[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(db: &str, coll: &str) -> TableKey {
        TableKey {
            db: Segment::encode(db),
            coll: Segment::encode(coll),
        }
    }

    #[test]
    fn tables_are_schema_folders_with_fabric_names() {
        let paths = LandingPaths::new(vec![Segment::literal("LandingZone").expect("literal")]);
        assert_eq!(
            paths.data_file(&key("shop", "orders"), 7).to_string(),
            "LandingZone/shop.schema/orders/00000000000000000007.parquet"
        );
        assert_eq!(
            paths.processed_file(&key("shop", "orders"), 7).to_string(),
            "LandingZone/shop.schema/orders/_ProcessedFiles/00000000000000000007.parquet"
        );
        let dotted = LandingPaths::table_name(&key("shop", "orders.archive"));
        assert!(dotted.starts_with("shop.orders_archive_"), "{dotted}");
        assert_ne!(
            LandingPaths::table_name(&key("shop", "a.b")),
            LandingPaths::table_name(&key("shop", "a_b"))
        );
        assert_eq!(LandingPaths::table_name(&key("shop", "a_b")), "shop.a_b");
    }
}
