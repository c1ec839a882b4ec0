//! Finding records without reading the lake whole: which collection hours have change
//! files, and in which folders, by walking the path template level by level
//! (docs/decisions.md, "A pass").

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::TryStreamExt;

use super::state::CollectionHour;
use super::CompactError;
use crate::domain::{EventHour, Level, PathLayout, Segment};
use crate::sink::Sink;

/// The folders that may hold one collection hour's change files.
pub type RecordFolders = BTreeMap<CollectionHour, Vec<Vec<Segment>>>;

/// Lists folders one level deep, each folder once per pass: the database and collection
/// folders are the same for every hour a pass walks. A folder created after it was listed
/// only holds records written after the hour closed, which carry late markers.
pub struct FolderCache<'a> {
    sink: &'a dyn Sink,
    listed: HashMap<Vec<Segment>, Vec<Segment>>,
    /// Folder listings asked of the store (for the summary and the idle-pass benchmark).
    pub listings: u64,
}

impl<'a> FolderCache<'a> {
    pub fn new(sink: &'a dyn Sink) -> FolderCache<'a> {
        FolderCache {
            sink,
            listed: HashMap::new(),
            listings: 0,
        }
    }

    async fn children(&mut self, folder: &[Segment]) -> Result<Vec<Segment>, CompactError> {
        if let Some(children) = self.listed.get(folder) {
            return Ok(children.clone());
        }
        self.listings += 1;
        let children = self.sink.folders(folder).await?;
        self.listed.insert(folder.to_vec(), children.clone());
        Ok(children)
    }
}

/// Which collections a walk covers.
#[derive(Clone, Copy)]
pub enum Collections<'k> {
    All,
    One { db: &'k Segment, coll: &'k Segment },
}

/// A folder on the way down, with the names its levels gave so far.
struct Partial {
    folder: Vec<Segment>,
    db: Option<Segment>,
    coll: Option<Segment>,
}

/// The folders of `hour`'s change files, per collection.
pub async fn folders_of_hour(
    layout: &PathLayout,
    cache: &mut FolderCache<'_>,
    hour: EventHour,
    collections: Collections<'_>,
) -> Result<RecordFolders, CompactError> {
    let levels = layout
        .levels_for_hour(hour)
        .map_err(|error| CompactError::Template(error.to_string()))?;
    let mut frontier = vec![Partial {
        folder: layout.directory().to_vec(),
        db: None,
        coll: None,
    }];
    for level in &levels {
        let mut next = Vec::new();
        for partial in frontier {
            match level {
                Level::Fixed(segment) => next.push(partial.descend(segment.clone())),
                Level::Db { before, after } | Level::Coll { before, after } => {
                    let is_db = matches!(level, Level::Db { .. });
                    let wanted = match (collections, is_db) {
                        (Collections::All, _) => None,
                        (Collections::One { db, .. }, true) => Some(db),
                        (Collections::One { coll, .. }, false) => Some(coll),
                    };
                    let names = match wanted {
                        Some(name) => vec![Segment::assemble(format!("{before}{name}{after}"))],
                        None => cache.children(&partial.folder).await?,
                    };
                    for name in names {
                        let Some(value) = strip(&name, before, after) else {
                            continue;
                        };
                        let mut child = partial.descend(name);
                        if is_db {
                            child.db = Some(value);
                        } else {
                            child.coll = Some(value);
                        }
                        next.push(child);
                    }
                }
                Level::Any => {
                    for name in cache.children(&partial.folder).await? {
                        next.push(partial.descend(name));
                    }
                }
            }
        }
        frontier = next;
    }
    let mut found = RecordFolders::new();
    for partial in frontier {
        if let (Some(db), Some(coll)) = (partial.db, partial.coll) {
            found
                .entry(CollectionHour { db, coll, hour })
                .or_default()
                .push(partial.folder);
        }
    }
    Ok(found)
}

impl Partial {
    fn descend(&self, name: Segment) -> Partial {
        let mut folder = self.folder.clone();
        folder.push(name);
        Partial {
            folder,
            db: self.db.clone(),
            coll: self.coll.clone(),
        }
    }
}

/// The encoded name inside a folder name made by `before{value}after`.
fn strip(name: &Segment, before: &str, after: &str) -> Option<Segment> {
    let value = name.as_str().strip_prefix(before)?.strip_suffix(after)?;
    Segment::stored(value)
}

/// Every collection hour that has change files: the first pass's one walk of the whole
/// change directory (later passes never do this).
pub async fn every_hour(
    sink: &dyn Sink,
    layout: &PathLayout,
) -> Result<BTreeSet<CollectionHour>, CompactError> {
    // The levels' shape does not depend on the hour; only `Fixed` names do, and those
    // are not needed here (a file's hour comes from its name).
    let levels = layout
        .levels_for_hour(EventHour::of_unix_seconds(0))
        .map_err(|error| CompactError::Template(error.to_string()))?;
    let depth = layout.directory().len();
    let mut hours = BTreeSet::new();
    let mut pages = sink.list(layout.directory());
    while let Some(page) = pages.try_next().await? {
        for listed in page {
            let segments = listed.path.segments();
            if segments.len() != depth + levels.len() + 1 {
                continue;
            }
            let Some(seconds) = layout.seconds_from_name(listed.path.file_name()) else {
                continue;
            };
            let (mut db, mut coll) = (None, None);
            for (level, name) in levels.iter().zip(&segments[depth..]) {
                match level {
                    Level::Db { before, after } => db = strip(name, before, after),
                    Level::Coll { before, after } => coll = strip(name, before, after),
                    Level::Fixed(_) | Level::Any => {}
                }
            }
            if let (Some(db), Some(coll)) = (db, coll) {
                hours.insert(CollectionHour {
                    db,
                    coll,
                    hour: EventHour::of_unix_seconds(i64::from(seconds)),
                });
            }
        }
    }
    Ok(hours)
}
