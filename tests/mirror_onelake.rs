//! The mirror into a landing zone on ADLS Gen2 shaped as OneLake's (issue #10, "Where it
//! writes"): the lake on one DFS test server (Shared Key), the landing zone on another that
//! takes bearer tokens only, at `http://127.0.0.1:<port>/onelake/<workspace>/<item>.
//! MountedRelationalDatabase/Files/LandingZone`. The real handler ingests change events
//! over HTTP; `handler mirror` runs as a process with a user-assigned identity
//! (`AZURE_CLIENT_ID`, tokens from a stand-in App Service identity endpoint); the landing
//! zone is read back from the server's files and applied by the reference replicator,
//! which moves applied files to `_ProcessedFiles/` on the server as Fabric does.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Output;
use std::time::Duration;

use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind, DEV_ACCOUNT_KEY};
use serde_json::{json, Value};
use support::handler::{run_within, Handler};
use support::identity::{Answer, IdentityEndpoint, HEADER_SECRET};
use support::replicator;
use support::timer::{assert_failed_with_one_message, stdout_summary};

/// The workspace (OneLake's filesystem) and the landing zone inside it.
const WORKSPACE: &str = "0a1b2c3d-0000-4000-8000-0123456789ab";
const LANDING: &str = "Orders.MountedRelationalDatabase/Files/LandingZone";
const TABLE: &str = "shop.schema/orders";
const LAKE_FILESYSTEM: &str = "mongodb";
/// The user-assigned identity with a workspace role, and one without.
const WRITER: &str = "77777777-7777-4777-8777-777777777777";
const NO_ROLE: &str = "88888888-8888-4888-8888-888888888888";
const WRITER_TOKEN: &str = "workspace-contributor-token";
const NO_ROLE_TOKEN: &str = "token-without-a-workspace-role";
/// 2024-06-16T09:00:00Z: closed hours (the mirror's late-marker path).
const PAST: u32 = 1_718_528_400;
/// A pass over a few dozen change files, in a debug build on a busy machine.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// A document version: its title, quantity and, from some changes on, a note.
type Document = (&'static str, i64, Option<&'static str>);

/// A change event of document `n` at `PAST + offset` (one second each: distinct tokens),
/// with its full document unless it is a delete.
fn event(operation: &str, offset: u32, n: u32, document: Option<Document>) -> Value {
    let t = PAST + offset;
    let id = json!({"$oid": key(n)});
    let mut event = json!({
        "_id": {"_data": format!("82{t:08X}000000012B022C0100296E5A10046B3F8A2C91D44E0FA7C25B9E13D08F4146645F69640004")},
        "operationType": operation,
        "clusterTime": {"$timestamp": {"t": t, "i": 1}},
        "wallTime": {"$date": {"$numberLong": (u64::from(t) * 1000).to_string()}},
        "ns": {"db": "shop", "coll": "orders"},
        "documentKey": {"_id": id},
    });
    if let Some((title, qty, note)) = document {
        let mut full = json!({"_id": id, "title": title, "qty": {"$numberInt": qty.to_string()}});
        if let Some(note) = note {
            full["note"] = json!(note);
        }
        event["fullDocument"] = full;
    }
    event
}

/// The key column's text of document `n`: its ObjectId's 24 hex digits.
fn key(n: u32) -> String {
    format!("665e{n:020x}")
}

/// The landing zone's DFS server, what the replicator has applied of it, and the settings
/// of the handler and the command.
struct Rig {
    lake: DfsServer,
    zone: DfsServer,
    identity: IdentityEndpoint,
    /// The landing zone as last read back, and the replicator's state.
    copy: tempfile::TempDir,
    state: tempfile::TempDir,
    /// The model: per document, its state after the changes delivered so far.
    expected: BTreeMap<u32, Option<Document>>,
    /// Per document, the greatest offset (`eventId`) delivered.
    newest: BTreeMap<u32, u32>,
}

impl Rig {
    fn new() -> Rig {
        let lake = DfsServer::builder()
            .filesystem(LAKE_FILESYSTEM)
            .start_in_thread()
            .expect("lake server starts");
        // Bearer tokens only: Shared Key and SAS are refused, as OneLake refuses them.
        let zone = DfsServer::builder()
            .account("onelake", DEV_ACCOUNT_KEY)
            .filesystem(WORKSPACE)
            .bearer_token(WRITER_TOKEN)
            .bearer_token_without_permission(NO_ROLE_TOKEN)
            .record_requests()
            .start_in_thread()
            .expect("landing zone server starts");
        let answers = [
            (WRITER, Answer::Token(WRITER_TOKEN)),
            (NO_ROLE, Answer::Token(NO_ROLE_TOKEN)),
        ]
        .into_iter()
        .map(|(id, answer)| (id.to_owned(), answer))
        .collect::<HashMap<_, _>>();
        Rig {
            lake,
            zone,
            identity: IdentityEndpoint::start_in_thread(answers),
            copy: tempfile::tempdir().expect("dir"),
            state: tempfile::tempdir().expect("dir"),
            expected: BTreeMap::new(),
            newest: BTreeMap::new(),
        }
    }

    /// `MIRROR_LANDING_ZONE`, in OneLake's shape on loopback.
    fn landing_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/onelake/{WORKSPACE}/{LANDING}",
            self.zone.port()
        )
    }

    /// The lake by Shared Key, the landing zone by the user-assigned identity `client_id`.
    fn vars(&self, client_id: &str) -> Vec<(&'static str, String)> {
        vec![
            ("STORAGE_ACCOUNT_NAME", "devstoreaccount1".into()),
            ("STORAGE_ACCOUNT_KEY", DEV_ACCOUNT_KEY.into()),
            ("STORAGE_DFS_ENDPOINT", self.lake.endpoint()),
            ("STORAGE_WRITE_PROTOCOL", "dfs".into()),
            // The landing zone borrows the lake's limits: faults exhaust it soon.
            ("STORAGE_RETRY_BUDGET_SECS", "2".into()),
            ("MIRROR_LANDING_ZONE", self.landing_url()),
            // Small data files: a pass makes several steps.
            ("MIRROR_MAX_ROWS_PER_FILE", "3".into()),
            ("AZURE_CLIENT_ID", client_id.into()),
            ("IDENTITY_ENDPOINT", self.identity.url()),
            ("IDENTITY_HEADER", HEADER_SECRET.into()),
        ]
    }

    /// Posts `events` (in this order) to a handler serving the lake; each is stored.
    async fn deliver(&mut self, events: &[(&str, u32, u32, Option<Document>)]) {
        let vars = self.vars(WRITER);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let handler = Handler::start_on_adls(&self.lake.endpoint(), &vars);
        let body: Vec<Value> = events
            .iter()
            .map(|&(operation, offset, n, document)| event(operation, offset, n, document))
            .collect();
        let response = handler.post_json(Value::from(body).to_string()).await;
        let status = response.status();
        let answer: Value = response.json().await.expect("JSON answer");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["skipped"], 0, "{answer}");
        handler.terminate();
        assert_eq!(handler.wait().0, Some(0));
        // The model: per document, the change with the greatest offset (eventId) wins.
        let mut latest: BTreeMap<u32, (u32, Option<Document>)> = BTreeMap::new();
        for &(_, offset, n, document) in events {
            if latest.get(&n).is_none_or(|(newest, _)| offset > *newest) {
                latest.insert(n, (offset, document));
            }
        }
        for (n, (offset, document)) in latest {
            // A late change older than what was delivered before is no news.
            if self.newest.get(&n).is_none_or(|newest| offset > *newest) {
                self.newest.insert(n, offset);
                self.expected.insert(n, document);
            }
        }
    }

    /// `handler mirror` as the identity `client_id`.
    fn mirror(&self, client_id: &str) -> Output {
        let vars = self.vars(client_id);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_within(&["mirror"], &vars, RUN_DEADLINE)
    }

    /// The landing zone's files on the server, by path inside the landing zone.
    fn zone_files(&self) -> Vec<String> {
        let prefix = format!("{LANDING}/");
        self.zone
            .files(WORKSPACE)
            .into_iter()
            .filter_map(|entry| entry.path.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// Data file numbers of the table, waiting in its folder and processed.
    fn numbers(&self) -> (BTreeSet<u64>, BTreeSet<u64>) {
        let (mut waiting, mut processed) = (BTreeSet::new(), BTreeSet::new());
        for path in self.zone_files() {
            let Some(rest) = path.strip_prefix(&format!("{TABLE}/")) else {
                continue;
            };
            let (set, name) = match rest.strip_prefix("_ProcessedFiles/") {
                Some(name) => (&mut processed, name),
                None => (&mut waiting, rest),
            };
            if let Some(number) = data_file_number(name) {
                set.insert(number);
            }
        }
        (waiting, processed)
    }

    /// Fabric's turn: reads the landing zone back from the server's files, applies it with
    /// the replicator (which refuses gaps, reused numbers, data before `_metadata.json`),
    /// and moves what it applied to `_ProcessedFiles/` on the server too.
    fn replicate(&self, what: &str) {
        for path in self.zone_files() {
            let bytes = self
                .zone
                .read(WORKSPACE, &format!("{LANDING}/{path}"))
                .expect("a file");
            let local = self.copy.path().join(&path);
            std::fs::create_dir_all(local.parent().expect("a folder")).expect("folder");
            std::fs::write(local, bytes).expect("copied");
        }
        let state = self.state.path().join("state.json");
        if let Err(message) = replicator::apply(self.copy.path(), &state) {
            panic!("{what}: the landing zone breaks the contract: {message}");
        }
        // The replicator moved what it applied; Fabric does the same in OneLake.
        let (waiting, _) = self.numbers();
        for number in waiting {
            let name = format!("{number:020}.parquet");
            let processed = self.copy.path().join(TABLE).join("_ProcessedFiles");
            if processed.join(&name).is_file() {
                let path = format!("{LANDING}/{TABLE}/{name}");
                let bytes = self.zone.read(WORKSPACE, &path).expect("a data file");
                self.zone.remove(WORKSPACE, &path);
                let moved = format!("{LANDING}/{TABLE}/_ProcessedFiles/{name}");
                self.zone.put_file(WORKSPACE, &moved, bytes);
            }
        }
    }

    /// The replicated table equals the model, row by row.
    fn check(&self, what: &str) {
        let dump = replicator::dump(&self.state.path().join("state.json"));
        let table = &dump[TABLE];
        let rows: BTreeMap<&String, &Value> = table["rows"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: no table {TABLE}: {dump}"))
            .iter()
            .collect();
        let expected: BTreeMap<String, Value> = self
            .expected
            .iter()
            .filter_map(|(&n, document)| {
                document.map(|(title, qty, note)| {
                    let row = json!({"_id": key(n), "title": title, "qty": qty, "note": note});
                    (key(n), row)
                })
            })
            .collect();
        assert_eq!(
            rows.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            expected.keys().map(String::as_str).collect::<Vec<_>>(),
            "{what}: the table's keys"
        );
        for (key, want) in &expected {
            let row = rows[key];
            for column in ["_id", "title", "qty", "note"] {
                assert_eq!(row[column], want[column], "{what}: {key}.{column} in {row}");
            }
        }
        // Numbering continues from the producer's state, not from the folder (Fabric
        // moved every earlier file away): applied files are 1..N, nothing waits.
        let (waiting, processed) = self.numbers();
        assert!(waiting.is_empty(), "{what}: not applied: {waiting:?}");
        let next = table["nextFile"].as_u64().expect("nextFile");
        assert_eq!(
            processed,
            (1..next).collect::<BTreeSet<_>>(),
            "{what}: contiguous from 1"
        );
    }

    /// Only `_`-prefixed names (Fabric's folders, temporary files, `_metadata.json`) and
    /// 20-digit data files in a table folder are in the landing zone.
    fn assert_nothing_stray(&self, what: &str) {
        for path in self.zone_files() {
            let parts: Vec<&str> = path.split('/').collect();
            let hidden = parts.iter().any(|part| part.starts_with('_'));
            let data = parts.len() == 3
                && parts[0].ends_with(".schema")
                && data_file_number(parts[2]).is_some();
            assert!(hidden || data, "{what}: {path} is visible to Fabric");
        }
    }

    /// Every request the landing zone got since the last call carried the identity's
    /// token, and there were some.
    fn assert_bearer_only(&self, token: &str, what: &str) {
        let requests = self.zone.requests();
        assert!(
            !requests.is_empty(),
            "{what}: no request reached the landing zone"
        );
        let expected = format!("Bearer {token}");
        for request in &requests {
            assert_eq!(
                request.header("authorization"),
                Some(expected.as_str()),
                "{what}: {} {}",
                request.method,
                request.uri
            );
        }
        self.zone.clear_requests();
    }
}

/// `n` of `<20 digits>.parquet`.
fn data_file_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".parquet")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Six orders inserted, one updated; delivered newest first, one of them twice.
const FIRST: [(&str, u32, u32, Option<Document>); 8] = [
    ("update", 100, 1, Some(("order 1 paid", 11, None))),
    ("insert", 50, 5, Some(("order 5", 5, None))),
    ("insert", 40, 4, Some(("order 4", 4, None))),
    ("insert", 30, 3, Some(("order 3", 3, None))),
    ("insert", 20, 2, Some(("order 2", 2, None))),
    ("insert", 10, 1, Some(("order 1", 1, None))),
    ("insert", 0, 0, Some(("order 0", 0, None))),
    ("insert", 30, 3, Some(("order 3", 3, None))),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_fills_a_onelake_shaped_landing_zone_as_a_user_assigned_identity() {
    let mut rig = Rig::new();
    rig.deliver(&FIRST).await;

    // An identity without a workspace role: one line naming the role, nothing published.
    let refused = rig.mirror(NO_ROLE);
    assert_failed_with_one_message(
        &refused,
        1,
        "mirror",
        "Contributor role on the Fabric workspace",
    );
    assert!(rig.zone_files().is_empty(), "{:?}", rig.zone_files());
    rig.assert_bearer_only(NO_ROLE_TOKEN, "the refused pass");

    let summary = stdout_summary(&rig.mirror(WRITER));
    rig.assert_bearer_only(WRITER_TOKEN, "the first pass");
    let asked = rig.identity.seen_for(WRITER);
    assert!(
        !asked.is_empty(),
        "the token came from the identity endpoint"
    );
    assert!(asked
        .iter()
        .all(|seen| seen.query.get("resource").map(String::as_str)
            == Some("https://storage.azure.com")));
    let files = rig.zone_files();
    assert!(
        files.contains(&format!("{TABLE}/_metadata.json")),
        "{files:?}"
    );
    assert_eq!(
        rig.zone
            .read_string(WORKSPACE, &format!("{LANDING}/{TABLE}/_metadata.json"))
            .as_deref(),
        Some(r#"{"keyColumns":["_id"]}"#)
    );
    let (waiting, _) = rig.numbers();
    assert_eq!(summary["files"], waiting.len(), "{summary}");
    assert_eq!(waiting, (1..=waiting.len() as u64).collect(), "{files:?}");
    assert!(
        waiting.len() >= 2,
        "6 documents at 3 rows a file: {summary}"
    );
    rig.assert_nothing_stray("the first pass");
    rig.replicate("the first pass");
    rig.check("the first pass");

    // Replaced, deleted, updated (a new field), and a late update older than the state.
    rig.deliver(&[
        (
            "replace",
            200,
            2,
            Some(("order 2 again", 22, Some("replaced"))),
        ),
        ("delete", 210, 3, None),
        ("update", 220, 4, Some(("order 4 sent", 44, Some("sent")))),
        ("update", 60, 1, Some(("order 1 stale", 99, None))),
        ("insert", 230, 6, Some(("order 6", 6, None))),
    ])
    .await;
    // Transient faults on the landing zone: busy answers and a lost rename answer.
    for op in [OpKind::CreateFile, OpKind::Append] {
        rig.zone
            .faults()
            .push(FaultRule::new(op, FaultAction::server_busy()).times(2));
    }
    rig.zone
        .faults()
        .push(FaultRule::new(OpKind::Rename, FaultAction::ApplyThenDrop).times(1));
    let summary = stdout_summary(&rig.mirror(WRITER));
    assert_eq!(
        rig.zone.faults().pending(),
        0,
        "every fault was met: {summary}"
    );
    rig.zone.faults().clear();
    rig.assert_bearer_only(WRITER_TOKEN, "the pass through transient faults");
    rig.assert_nothing_stray("the pass through transient faults");
    let temporary: Vec<String> = rig
        .zone_files()
        .into_iter()
        .filter(|path| path.starts_with("_scratchPad/") || path.starts_with("_tmp/"))
        .collect();
    assert!(
        temporary.is_empty(),
        "retried writes clean up: {temporary:?}"
    );
    rig.replicate("the pass through transient faults");
    rig.check("the pass through transient faults");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landing_zone_failing_mid_pass_leaves_no_gap() {
    let mut rig = Rig::new();
    rig.deliver(&FIRST).await;
    stdout_summary(&rig.mirror(WRITER));
    rig.replicate("the first pass");
    let (_, before) = rig.numbers();

    // A dozen new orders: four files, of which the landing zone takes one, then fails.
    let orders: Vec<(&str, u32, u32, Option<Document>)> = (10..22)
        .map(|n| {
            (
                "insert",
                300 + n,
                n,
                Some(("a new order", i64::from(n), None)),
            )
        })
        .collect();
    rig.deliver(&orders).await;
    rig.zone.faults().push(
        FaultRule::new(OpKind::Rename, FaultAction::internal_error())
            .after(1)
            .always(),
    );
    let failed = rig.mirror(WRITER);
    assert!(rig.zone.faults().fired() > 0);
    rig.zone.faults().clear();
    assert_failed_with_one_message(&failed, 1, "mirror", "500");
    rig.assert_nothing_stray("the failed pass");
    // What the failed pass published is a valid prefix: the replicator applies it.
    rig.replicate("after the failed pass");
    let (_, processed) = rig.numbers();
    assert!(
        processed.len() > before.len(),
        "the failed pass published a file first: {processed:?}"
    );

    let summary = stdout_summary(&rig.mirror(WRITER));
    rig.assert_bearer_only(WRITER_TOKEN, "the passes");
    let (waiting, _) = rig.numbers();
    let first_new = processed.last().copied().unwrap_or(0) + 1;
    assert_eq!(
        waiting.iter().next().copied(),
        Some(first_new),
        "the next pass continues at the next number: {summary}"
    );
    rig.assert_nothing_stray("the pass after");
    rig.replicate("the pass after");
    rig.check("the pass after");
}
