//! Compaction on ADLS Gen2 (the DFS test server, Shared Key checked on every request):
//! the same pass as on the local lake, through storage faults. Transient faults are
//! retried and change nothing; a pass that gives up leaves the lake so that the next pass
//! ends with every record in exactly one part (docs/decisions.md, "Issue #9").

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind};
use mongo_lake_ingest::compact::{CompactSettings, Compactor, Formats, PassScope};
use mongo_lake_ingest::domain::{PathLayout, Segment, DEFAULT_TEMPLATE};
use mongo_lake_ingest::sink::{AdlsSink, Sink};
use support::adls::{key, settings};

const FILESYSTEM: &str = "mongodb";
/// 2024-06-16T10:00:00Z.
const HOUR_10: u32 = 1_718_532_000;

fn segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .map(|s| Segment::literal(s).expect("segment"))
        .collect()
}

struct Lake {
    server: DfsServer,
    sink: Arc<dyn Sink>,
    spool: tempfile::TempDir,
}

impl Lake {
    async fn start() -> Lake {
        let server = DfsServer::builder()
            .filesystem(FILESYSTEM)
            .start()
            .await
            .expect("DFS server starts");
        let sink: Arc<dyn Sink> = Arc::new(
            AdlsSink::new(&settings(&server, key()), FILESYSTEM, &segments("changes"))
                .expect("client"),
        );
        Lake {
            server,
            sink,
            spool: tempfile::tempdir().expect("spool"),
        }
    }

    fn compactor(&self, delete_sources: bool) -> Compactor {
        let layout = PathLayout::new(segments("changes"), DEFAULT_TEMPLATE, None).expect("layout");
        Compactor::new(
            Arc::clone(&self.sink),
            layout,
            CompactSettings {
                root: segments("changes-hourly"),
                delay: Duration::from_secs(600),
                formats: Formats::default(),
                delete_sources,
                time_budget: Duration::from_secs(3600),
                spool_dir: self.spool.path().to_path_buf(),
            },
        )
    }

    /// Change files for `collections` x `hours` x `per_hour`, named and shaped as the
    /// handler writes them, put in place directly. Returns their event ids.
    fn seed(&self, collections: usize, hours: u32, per_hour: u32) -> Vec<String> {
        let mut ids = Vec::new();
        for c in 0..collections {
            for h in 0..hours {
                for n in 0..per_hour {
                    let seconds = HOUR_10 + h * 3600 + n;
                    let id = format!("82{seconds:08X}{c:04X}{n:08X}");
                    let line = format!(
                        "{{\"operationType\":\"insert\",\"dataSource\":\"fullDocument\",\"eventId\":\"{id}\",\"ns\":{{\"db\":\"d\",\"coll\":\"c{c}\"}},\"documentKey\":{{\"_id\":{n}}},\"data\":{{\"_id\":{n}}}}}\n"
                    );
                    let hour = 10 + h;
                    let path = format!(
                        "changes/d/c{c}/year=2024/month=06/day=16/hour={hour:02}/{seconds:010}-{n:010}-{n}-{c:016x}.json"
                    );
                    self.server.put_file(FILESYSTEM, &path, line);
                    ids.push(id);
                }
            }
        }
        ids.sort();
        ids
    }

    /// The event ids of every line of every compacted JSONL part, sorted.
    async fn compacted_ids(&self) -> Vec<String> {
        use futures_util::TryStreamExt;
        let mut ids = Vec::new();
        let mut pages = self.sink.list(&segments("changes-hourly"));
        while let Some(page) = pages.try_next().await.expect("listing") {
            for listed in page {
                let name = listed.path.file_name().as_str().to_owned();
                if !name.ends_with(".jsonl") {
                    continue;
                }
                let bytes = self.sink.read(&listed.path).await.expect("part");
                for line in std::str::from_utf8(&bytes).expect("UTF-8").lines() {
                    let value: serde_json::Value = serde_json::from_str(line).expect("line");
                    ids.push(value["eventId"].as_str().expect("eventId").to_owned());
                }
            }
        }
        ids.sort();
        ids
    }

    async fn change_files(&self) -> usize {
        use futures_util::TryStreamExt;
        let pages: Vec<_> = self
            .sink
            .list(&segments("changes"))
            .try_collect()
            .await
            .expect("list");
        pages.iter().map(Vec::len).sum()
    }
}

fn later() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(HOUR_10) + 10 * 3600)
}

#[tokio::test]
async fn transient_faults_on_every_operation_change_nothing() {
    let lake = Lake::start().await;
    let ids = lake.seed(2, 3, 25);
    for op in [
        OpKind::ListPaths,
        OpKind::Read,
        OpKind::CreateFile,
        OpKind::Append,
        OpKind::Flush,
        OpKind::Rename,
        OpKind::Delete,
    ] {
        lake.server
            .faults()
            .push(FaultRule::new(op, FaultAction::server_busy()).times(2));
    }
    lake.server
        .faults()
        .push(FaultRule::new(OpKind::Rename, FaultAction::ApplyThenDrop).times(1));

    let summary = lake
        .compactor(true)
        .run_pass(PassScope::Due, later())
        .await
        .expect("the pass retries through transient faults");

    assert!(
        lake.server.faults().fired() >= 10,
        "faults fired: {}",
        lake.server.faults().fired()
    );
    assert_eq!(summary.records_compacted, ids.len() as u64);
    assert_eq!(lake.compacted_ids().await, ids, "every record exactly once");
    assert_eq!(
        lake.change_files().await,
        0,
        "sources deleted once compacted"
    );
}

#[tokio::test]
async fn a_pass_that_gives_up_is_finished_exactly_by_the_next() {
    for (op, after) in [
        (OpKind::Read, 30),
        (OpKind::CreateFile, 3),
        (OpKind::Rename, 4),
        (OpKind::Delete, 10),
        (OpKind::ListPaths, 12),
    ] {
        let lake = Lake::start().await;
        let ids = lake.seed(2, 2, 20);
        lake.server.faults().push(
            FaultRule::new(
                op,
                FaultAction::status(403, "AuthorizationFailure", "refused"),
            )
            .after(after)
            .always(),
        );
        let failed = lake.compactor(true).run_pass(PassScope::Due, later()).await;
        assert!(failed.is_err(), "{op:?} after {after}: the pass fails");

        lake.server.faults().clear();
        lake.compactor(true)
            .run_pass(PassScope::Due, later())
            .await
            .expect("the next pass");
        assert_eq!(
            lake.compacted_ids().await,
            ids,
            "{op:?} after {after}: each record once"
        );
        assert_eq!(lake.change_files().await, 0, "{op:?} after {after}");
    }
}
