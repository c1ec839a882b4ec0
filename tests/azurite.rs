//! The blob write protocol against Azurite, Microsoft's storage emulator (npm `azurite`,
//! its Blob service only): Put Blob with `If-None-Match: *` as Microsoft's own code answers
//! it, with Shared Key and an account SAS checked by Azurite, and the handler process
//! writing through it. Azurite is installed on first use into `target/azurite` (npm must
//! reach its registry once); the tests never skip.
//!
//! Azurite has no DFS endpoint and no hierarchical namespace: listings, reads and deletes
//! through DFS, folders, renames and the `dfs` protocol are tested against the DFS test
//! server instead (tests/adls_sink.rs, tests/adls_blob.rs), as are injected faults.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use azure_core::{Context, Method, Request};
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_datalake::clients::{DataLakeClientBuilder, FileClient, PathClient};
use dfs_test_server::{account_sas, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use mongo_lake_ingest::configuration::{AdlsSettings, Credential, Secret, WriteProtocol};
use mongo_lake_ingest::sink::{LakeFile, Sink, Stored};
use support::adls::{file, key, settings_at, sink, wrong_key, FILESYSTEM};
use support::handler::Handler;
use support::sample;

/// The Azurite release the tests run.
const AZURITE_VERSION: &str = "3.37.0";

/// Azurite's Blob service on an ephemeral loopback port, in memory; killed when dropped.
struct Azurite {
    child: Child,
    /// `http://127.0.0.1:<port>/devstoreaccount1/`
    endpoint: String,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/azurite`, with Azurite installed in it.
fn installed() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/azurite");
    let manifest = dir.join("node_modules/azurite/package.json");
    let version = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| json["version"].as_str().map(str::to_owned));
    if version.as_deref() == Some(AZURITE_VERSION) {
        return dir;
    }
    std::fs::create_dir_all(&dir).expect("target/azurite");
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let package = format!("azurite@{AZURITE_VERSION}");
    let status = Command::new(npm)
        .args(["install", "--no-audit", "--no-fund", "--no-save", "--prefix", "."])
        .arg(&package)
        .current_dir(&dir)
        .status()
        .unwrap_or_else(|error| {
            panic!("cannot run npm ({error}): npm (part of Node.js 18+) installs {package} for these tests")
        });
    assert!(
        status.success(),
        "`npm install {package}` failed in {} ({status}); the npm registry must be reachable once",
        dir.display()
    );
    dir
}

/// Starts Azurite's Blob service and waits for the line that names its port.
fn start_azurite() -> Azurite {
    let dir = installed();
    let mut child = Command::new(dir.join("node_modules/.bin/azurite-blob"))
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("azurite-blob starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, seen) = mpsc::channel();
    // Read to the end: Azurite logs each request, and a closed pipe would stall it.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut azurite = Azurite {
        child,
        endpoint: String::new(),
    };
    const LISTENING: &str = "successfully listens on ";
    while azurite.endpoint.is_empty() {
        let line = seen
            .recv_timeout(Duration::from_secs(30))
            .expect("Azurite says where it listens within 30 s");
        if let Some((_, origin)) = line.split_once(LISTENING) {
            azurite.endpoint = format!("{}/{DEV_ACCOUNT}/", origin.trim());
        }
    }
    azurite
}

/// A client on the Blob endpoint's container, signing with the account key (the
/// DataLake client signs Blob requests alike; Azurite serves the Blob API only).
fn blob_client(azurite: &Azurite, path: &str) -> FileClient {
    let location = CloudLocation::Custom {
        account: DEV_ACCOUNT.to_owned(),
        uri: azurite.endpoint.clone(),
    };
    let credentials = StorageCredentials::access_key(DEV_ACCOUNT, DEV_ACCOUNT_KEY.to_owned());
    DataLakeClientBuilder::with_location(location, credentials)
        .build()
        .file_system_client(FILESYSTEM)
        .get_file_client(path)
}

/// Create Container (`?restype=container`) on Azurite, once: it may exist already.
async fn create_container(azurite: &Azurite) {
    let anchor = blob_client(azurite, "anchor");
    let mut url = anchor.url().expect("url");
    url.path_segments_mut().expect("path").pop();
    url.query_pairs_mut().append_pair("restype", "container");
    let mut request = Request::new(url, Method::Put);
    anchor
        .send(&mut Context::new(), &mut request)
        .await
        .expect("container created");
}

/// The blob's contents, read back with Get Blob.
async fn get_blob(azurite: &Azurite, path: &str) -> Vec<u8> {
    let client = blob_client(azurite, path);
    let mut request = Request::new(client.url().expect("url"), Method::Get);
    let response = client
        .send(&mut Context::new(), &mut request)
        .await
        .expect("blob read");
    response.into_body().collect().await.expect("body").to_vec()
}

/// Settings that put blobs on Azurite (it has no DFS endpoint: nothing else is asked of
/// it here).
fn settings(azurite: &Azurite, credential: Credential) -> AdlsSettings {
    AdlsSettings {
        write: WriteProtocol::Blob {
            endpoint: azurite.endpoint.clone(),
        },
        ..settings_at(&azurite.endpoint, credential)
    }
}

/// The names of the container's blobs (List Blobs).
async fn blob_names(azurite: &Azurite) -> Vec<String> {
    let anchor = blob_client(azurite, "anchor");
    let mut url = anchor.url().expect("url");
    url.path_segments_mut().expect("path").pop();
    url.query_pairs_mut()
        .append_pair("restype", "container")
        .append_pair("comp", "list");
    let mut request = Request::new(url, Method::Get);
    let response = anchor
        .send(&mut Context::new(), &mut request)
        .await
        .expect("listed");
    let body = response.into_body().collect_string().await.expect("XML");
    body.split("<Name>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</Name>").map(|(name, _)| name.to_owned()))
        .collect()
}

#[tokio::test]
async fn put_blob_writes_once_on_azurite_with_shared_key_and_sas() {
    let azurite = start_azurite();
    create_container(&azurite).await;
    let sas = account_sas(
        DEV_ACCOUNT,
        DEV_ACCOUNT_KEY,
        "racwdl",
        Duration::from_secs(3600),
    );
    let credentials = [key(), Credential::Sas(Secret::new(sas))];
    for (n, credential) in credentials.into_iter().enumerate() {
        let sink = sink(&settings(&azurite, credential));
        let first = file("azurite", n);
        let results = sink.store_all(vec![first.clone()]).await;
        assert_eq!(
            results[0].as_ref().ok(),
            Some(&Stored::Written),
            "{results:?}"
        );

        // The same path again, even with other bytes: already present, never replaced.
        let again = LakeFile {
            contents: b"{\"other\":true}\n".to_vec(),
            ..first.clone()
        };
        let results = sink.store_all(vec![first.clone(), again]).await;
        for result in &results {
            assert_eq!(
                result.as_ref().ok(),
                Some(&Stored::AlreadyPresent),
                "{results:?}"
            );
        }
        assert_eq!(
            get_blob(&azurite, &first.path.to_string()).await,
            first.contents
        );
    }
}

#[tokio::test]
async fn a_wrong_key_is_refused_by_azurite_at_once() {
    let azurite = start_azurite();
    create_container(&azurite).await;
    let results = sink(&settings(&azurite, wrong_key()))
        .store_all(vec![file("refused", 1)])
        .await;
    // Azurite answers a wrong signature with 403 AuthorizationFailure (Azure with
    // AuthenticationFailed): refused at once, not retried, either way.
    let error = results[0].as_ref().expect_err("refused");
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("HTTP 403"), "{error}");
}

/// The handler process on Azurite: each change event's files are Put Blobs, complete.
#[tokio::test]
async fn the_handler_writes_change_files_to_azurite() {
    let azurite = start_azurite();
    create_container(&azurite).await;
    let handler = Handler::start_on_adls(
        &azurite.endpoint,
        &[
            ("STORAGE_ACCOUNT_KEY", DEV_ACCOUNT_KEY),
            ("STORAGE_WRITE_PROTOCOL", "blob"),
            ("STORAGE_BLOB_ENDPOINT", &azurite.endpoint),
        ],
    );
    let answer = handler.post_json(sample("insert.json")).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    let names = blob_names(&azurite).await;
    let change = names
        .iter()
        .find(|name| name.starts_with("changes/"))
        .unwrap_or_else(|| panic!("no change file among {names:?}"));
    let contents = get_blob(&azurite, change).await;
    assert!(!contents.is_empty());

    let answer = handler.post_json(sample("insert.json")).await;
    assert_eq!(answer.status(), 200, "a redelivery is acknowledged");
    assert_eq!(blob_names(&azurite).await, names);
    assert_eq!(get_blob(&azurite, change).await, contents);
}
