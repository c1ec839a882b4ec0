//! The compaction settings (`COMPACT_*`): where the hourly files go, when an hour is
//! closed, which formats, and how long a pass may start new hours.

use std::path::PathBuf;

use super::table::Key;
use super::vars::Vars;
use super::{folders, ConfigError};
use crate::compact::{CompactSettings, Formats};
use crate::domain::Segment;

/// Reads the `COMPACT_*` rows. `change_directory` is the parsed `STORAGE_DIRECTORY`: the
/// default root sits beside it, and a root inside it (or around it) is refused, since a
/// pass would then read its own files as change files.
pub(super) fn from_vars<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    change_directory: &[Segment],
) -> Result<CompactSettings, ConfigError> {
    let root = match vars.text(Key::CompactDirectory)? {
        Some(given) => {
            let root = folders(&given)?;
            if overlaps(&root, change_directory) {
                return Err(ConfigError::new(
                    given.setting,
                    format!(
                        "{:?} overlaps the change directory (STORAGE_DIRECTORY); put the hourly files beside it, e.g. {:?}",
                        given.text,
                        joined(&CompactSettings::default_root(change_directory)),
                    ),
                ));
            }
            root
        }
        None => CompactSettings::default_root(change_directory),
    };
    let mut enabled = vars.flag(Key::CompactEnabled)?;
    if overlaps(&root, change_directory) {
        // Only the default can get here: a change directory at the container's root has
        // no "beside". Compaction is then off, rather than stopping the ingest.
        enabled = false;
    }
    // The row's options are the only values `choice` lets through, and each is a list
    // of formats the compactor reads the same way from a claim.
    let formats = match vars.choice(Key::CompactFormat)? {
        Some(list) => Formats::parse_list(&list.split(',').collect::<Vec<_>>())
            .map_err(|error| ConfigError::new(Key::CompactFormat.name(), error.to_string()))?,
        None => Formats::default(),
    };
    let spool_dir = vars
        .text(Key::CompactSpoolDir)?
        .map_or_else(std::env::temp_dir, |given| PathBuf::from(given.text.trim()));
    Ok(CompactSettings {
        enabled,
        root,
        delay: vars.seconds(Key::CompactDelaySecs)?,
        formats,
        delete_sources: vars.flag(Key::CompactDeleteSources)?,
        time_budget: vars.seconds(Key::CompactTimeBudgetSecs)?,
        spool_dir,
    })
}

/// One folder path is the other or lies inside it.
fn overlaps(a: &[Segment], b: &[Segment]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn joined(segments: &[Segment]) -> String {
    let parts: Vec<String> = segments.iter().map(ToString::to_string).collect();
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error_setting, settings};
    use super::*;
    use std::time::Duration;

    fn root(vars: &[(&str, &str)]) -> String {
        joined(&settings(vars).expect("valid").compact.root)
    }

    #[test]
    fn defaults_sit_beside_the_change_directory() {
        let s = settings(&[]).expect("valid").compact;
        assert_eq!(joined(&s.root), "changes-hourly");
        assert_eq!(s.delay, Duration::from_secs(600));
        assert_eq!(s.formats, Formats::default());
        assert!(!s.delete_sources);
        assert_eq!(s.time_budget, Duration::from_secs(180));
        assert_eq!(s.spool_dir, std::env::temp_dir());
        assert_eq!(
            root(&[("STORAGE_DIRECTORY", "mongodb/changes")]),
            "mongodb/changes-hourly"
        );
    }

    #[test]
    fn every_setting_is_read() {
        let s = settings(&[
            ("COMPACT_DIRECTORY", "/hourly/all/"),
            ("COMPACT_DELAY_SECS", "60"),
            ("COMPACT_FORMAT", "JSONL,parquet"),
            ("COMPACT_DELETE_SOURCES", "true"),
            ("COMPACT_TIME_BUDGET_SECS", "30"),
            ("COMPACT_SPOOL_DIR", "/mnt/spool"),
        ])
        .expect("valid")
        .compact;
        assert_eq!(joined(&s.root), "hourly/all");
        assert_eq!(s.delay, Duration::from_secs(60));
        assert_eq!(
            s.formats,
            Formats {
                jsonl: true,
                parquet: true
            }
        );
        assert!(s.delete_sources);
        assert_eq!(s.time_budget, Duration::from_secs(30));
        assert_eq!(s.spool_dir, PathBuf::from("/mnt/spool"));
        let parquet = settings(&[("COMPACT_FORMAT", "parquet")]).expect("valid");
        assert!(!parquet.compact.formats.jsonl && parquet.compact.formats.parquet);
    }

    #[test]
    fn invalid_values_name_the_setting() {
        for value in ["csv", "parquet,jsonl", "jsonl parquet"] {
            assert_eq!(
                error_setting(&[("COMPACT_FORMAT", value)]),
                "COMPACT_FORMAT",
                "{value}"
            );
        }
        let error = settings(&[("COMPACT_FORMAT", "csv")]).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "setting COMPACT_FORMAT: \"csv\" is not one of \"jsonl\", \"parquet\", \"jsonl,parquet\""
        );
        assert_eq!(
            error_setting(&[("COMPACT_DELAY_SECS", "0")]),
            "COMPACT_DELAY_SECS"
        );
        assert_eq!(
            error_setting(&[("COMPACT_DELETE_SOURCES", "sometimes")]),
            "COMPACT_DELETE_SOURCES"
        );
        assert_eq!(
            error_setting(&[("COMPACT_DIRECTORY", "a/../b")]),
            "COMPACT_DIRECTORY"
        );
    }

    #[test]
    fn the_root_never_overlaps_the_change_directory() {
        let with = |root| {
            settings(&[
                ("STORAGE_DIRECTORY", "mongo/changes"),
                ("COMPACT_DIRECTORY", root),
            ])
        };
        for refused in ["mongo/changes", "mongo/changes/hourly", "mongo", "/"] {
            let error = with(refused).expect_err(refused);
            assert_eq!(error.setting, "COMPACT_DIRECTORY", "{refused}");
            assert!(error.problem.contains("mongo/changes-hourly"), "{error}");
        }
        for accepted in ["mongo/changes-hourly", "changes", "hourly/mongo/changes"] {
            assert!(with(accepted).is_ok(), "{accepted}");
        }
        // A change directory at the container's root leaves no room beside it: the
        // ingest still runs, with compaction off (and no late markers).
        let at_root = settings(&[("STORAGE_DIRECTORY", "/")]).expect("ingest still runs");
        assert!(!at_root.compact.enabled);
        let chosen = settings(&[("COMPACT_ENABLED", "false")]).expect("valid");
        assert!(!chosen.compact.enabled);
        assert!(
            settings(&[]).expect("valid").compact.enabled,
            "on by default"
        );
    }
}
