//! The whole service on the ADLS sink, over real HTTP: the handler configured by settings
//! (as Azure app settings configure it) against the DFS test server on loopback.

mod support;

use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use serde_json::json;
use support::{sample, TestServer, CONTAINER};

async fn dfs() -> DfsServer {
    DfsServer::builder()
        .filesystem(CONTAINER)
        .start()
        .await
        .expect("DFS server starts")
}

/// The service on `dfs`, authenticated with the account key under the Python function's
/// setting names.
async fn service(dfs: &DfsServer, extra: &[(&str, &str)]) -> TestServer {
    let endpoint = dfs.endpoint();
    let mut settings = vec![
        ("storage_account_name", DEV_ACCOUNT),
        ("storage_account_key", DEV_ACCOUNT_KEY),
        ("STORAGE_DFS_ENDPOINT", endpoint.as_str()),
        // These tests break the DFS protocol's rename.
        ("STORAGE_WRITE_PROTOCOL", "dfs"),
        ("STORAGE_RETRY_BUDGET_SECS", "1"),
    ];
    settings.extend_from_slice(extra);
    // TestServer keys its local-lake default off the upper-case name.
    settings.push(("STORAGE_ACCOUNT_NAME", DEV_ACCOUNT));
    TestServer::start(&settings).await
}

/// Record files in the filesystem (not temporary files), by path.
/// Every file in the lake but the sink's temporary ones.
fn lake_files(dfs: &DfsServer) -> Vec<(String, Vec<u8>)> {
    dfs.files(CONTAINER)
        .into_iter()
        .filter(|entry| !entry.path.contains("/_tmp/"))
        .map(|entry| {
            let bytes = dfs.read(CONTAINER, &entry.path).expect("readable");
            (entry.path, bytes.to_vec())
        })
        .collect()
}

/// The change files: without the late markers compaction needs for these events of
/// long-closed hours (`tests/compaction*.rs` covers those).
fn change_files(dfs: &DfsServer) -> Vec<(String, Vec<u8>)> {
    let mut files = lake_files(dfs);
    files.retain(|(path, _)| path.starts_with("changes/"));
    files
}

#[tokio::test]
async fn adls_holds_exactly_what_the_local_lake_holds() {
    let dfs = dfs().await;
    let adls = service(&dfs, &[]).await;
    let local = TestServer::start(&[]).await;
    for name in [
        "insert.json",
        "update-full-document.json",
        "update-no-full-document.json",
        "replace.json",
        "delete-with-preimage.json",
        "delete-no-preimage.json",
        "batch.json",
    ] {
        let body = sample(name);
        let to_adls = adls.post_json(&body).await;
        let to_local = local.post_json(&body).await;
        assert_eq!(to_adls.status, 200, "{name}: {}", to_adls.body);
        assert_eq!(
            to_adls.body, to_local.body,
            "{name}: same summary, same paths"
        );
    }
    let in_adls = change_files(&dfs);
    let in_local = local.files();
    assert_eq!(in_adls.len(), in_local.len());
    for (path, bytes) in &in_adls {
        assert_eq!(Some(bytes), in_local.get(path), "{path}: byte-identical");
    }
    // A redelivery is reported as already present and changes nothing.
    let again = adls.post_json(&sample("batch.json")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["written"], 0, "{}", again.body);
    assert_eq!(change_files(&dfs), in_adls);
    adls.stop().await;
    local.stop().await;
}

#[tokio::test]
async fn hostile_names_land_under_the_directory() {
    let dfs = dfs().await;
    let server = service(&dfs, &[]).await;
    let long = "y".repeat(1000);
    let hostile = [
        ("../../x", "a b"),
        ("a/b", "#?%"),
        ("\u{1}\n", "."),
        ("données", "Movies"),
        ("movies", "MOVIES"),
        (long.as_str(), "+plus+"),
    ];
    for (serial, (db, coll)) in hostile.iter().enumerate() {
        let event = json!({
            "_id": {"_data": format!("82{serial:04}")},
            "operationType": "insert",
            "clusterTime": {"$timestamp": {"t": 1_700_000_000, "i": 1}},
            "ns": {"db": db, "coll": coll},
            "documentKey": {"_id": coll},
            "fullDocument": {"_id": coll},
        });
        let answer = server.post_json(&event.to_string()).await;
        assert_eq!(answer.status, 200, "{db:?}/{coll:?}: {}", answer.body);
        let path = &answer.written()[0];
        let stored = dfs
            .read(CONTAINER, path)
            .expect("the file is where the answer says");
        let record: serde_json::Value = serde_json::from_slice(&stored).expect("JSON");
        assert_eq!(record["ns"]["db"], *db, "the record keeps the real name");
        assert_eq!(record["ns"]["coll"], *coll);
    }
    let files = change_files(&dfs);
    assert_eq!(
        files.len(),
        hostile.len(),
        "one file per event, none merged"
    );
    let everything = lake_files(&dfs);
    assert!(
        everything
            .iter()
            .all(|(path, _)| path.starts_with("changes/")
                || path.starts_with("changes-hourly/_compact/late/")),
        "nothing outside the directory and compaction's state: {everything:?}"
    );
    assert_eq!(dfs.filesystems(), vec![CONTAINER.to_owned()]);
    server.stop().await;
}

#[tokio::test]
async fn storage_outage_answers_503_and_the_retry_stores_everything_once() {
    let dfs = dfs().await;
    let server = service(&dfs, &[]).await;
    dfs.faults()
        .push(FaultRule::new(OpKind::Rename, FaultAction::server_busy()).always());
    let down = server.post_json(&sample("batch.json")).await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(down.body["error"], "storage_unavailable");
    assert!(down.headers.contains_key("retry-after"));
    assert!(
        lake_files(&dfs).is_empty(),
        "nothing visible at a final path"
    );

    // The payload mode (forwarding off) carries the same outcome in Outputs.res.
    let (host_status, res) = server
        .invoke("application/json", &sample("insert.json"))
        .await;
    assert_eq!((host_status, res.status), (200, 503));

    dfs.faults().clear();
    let up = server.post_json(&sample("batch.json")).await;
    assert_eq!(up.status, 200, "{}", up.body);
    let stored = change_files(&dfs);
    assert_eq!(stored.len(), up.written().len());
    assert!(
        stored.iter().all(|(_, bytes)| bytes.ends_with(b"}\n")),
        "complete records"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_connection_string_alone_configures_the_sink() {
    let dfs = dfs().await;
    // As the portal shows it, with the endpoints of the DFS test server (files are Put
    // Blobs on its Blob endpoint, the default protocol).
    let connection_string = format!(
        "DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_ACCOUNT_KEY};BlobEndpoint={};DfsEndpoint={}",
        dfs.blob_endpoint(),
        dfs.endpoint()
    );
    let server = TestServer::start(&[
        ("STORAGE_CONNECTION_STRING", connection_string.as_str()),
        ("STORAGE_RETRY_BUDGET_SECS", "1"),
    ])
    .await;
    let answer = server.post_json(&sample("insert.json")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let path = &answer.written()[0];
    assert!(dfs
        .read(CONTAINER, path)
        .is_some_and(|bytes| bytes.ends_with(b"}\n")));
    server.stop().await;
}
