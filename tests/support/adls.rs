//! ADLS sink settings for tests against the DFS test server: short timeouts, a 10 s retry
//! budget, and the account the server knows.

use std::time::Duration;

use azure_storage::StorageCredentials;
use dfs_test_server::{DfsServer, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use mongo_lake_ingest::configuration::{AdlsSettings, Credential, Secret, WriteProtocol};
use mongo_lake_ingest::domain::{LakePath, Segment};
use mongo_lake_ingest::sink::{AdlsSink, LakeFile};

/// The filesystem the sink tests write to, and their directory in it.
pub const FILESYSTEM: &str = "mongodb";
pub const DIRECTORY: &str = "changes";

/// Settings for `server` with `credential`, writing with the DFS protocol (create, append,
/// rename): the tests that use these count and break its requests.
pub fn settings(server: &DfsServer, credential: Credential) -> AdlsSettings {
    settings_at(&server.endpoint(), credential)
}

/// Settings for the account at the DFS `endpoint`, writing with the DFS protocol.
pub fn settings_at(endpoint: &str, credential: Credential) -> AdlsSettings {
    AdlsSettings {
        account: DEV_ACCOUNT.to_owned(),
        credential,
        endpoint: endpoint.to_owned(),
        create_filesystem: false,
        write_concurrency: 16,
        request_timeout: Duration::from_secs(2),
        retry_budget: Duration::from_secs(10),
        write: WriteProtocol::Dfs,
    }
}

/// As [`settings`], writing each file with one Put Blob on the server's Blob endpoint (the
/// default protocol).
pub fn blob_settings(server: &DfsServer, credential: Credential) -> AdlsSettings {
    AdlsSettings {
        write: WriteProtocol::Blob {
            endpoint: server.blob_endpoint(),
        },
        ..settings(server, credential)
    }
}

/// `changes`, as segments.
pub fn directory() -> Vec<Segment> {
    vec![Segment::literal(DIRECTORY).expect("valid")]
}

/// A sink on [`FILESYSTEM`] and [`DIRECTORY`].
pub fn sink(settings: &AdlsSettings) -> AdlsSink {
    AdlsSink::new(settings, FILESYSTEM, &directory()).expect("client builds")
}

/// A sink that sends the bearer token `token`, as Microsoft Entra ID gives one.
pub fn bearer_sink(settings: &AdlsSettings, token: &str) -> AdlsSink {
    AdlsSink::with_credentials(
        settings,
        StorageCredentials::bearer_token(token.to_owned()),
        FILESYSTEM,
        &directory(),
    )
    .expect("client builds")
}

/// A server with [`FILESYSTEM`] that accepts `token`, or (not `permitted`) knows it but
/// refuses it the operations (403 `AuthorizationPermissionMismatch`).
pub async fn bearer_server(token: &str, permitted: bool) -> DfsServer {
    let builder = DfsServer::builder().filesystem(FILESYSTEM);
    let builder = match permitted {
        true => builder.bearer_token(token),
        false => builder.bearer_token_without_permission(token),
    };
    builder.start().await.expect("DFS server starts")
}

/// A file at `changes/<folder>/<n>.json` with contents unique to `n`.
pub fn file(folder: &str, n: usize) -> LakeFile {
    let mut segments = directory();
    segments.push(Segment::literal(folder).expect("valid"));
    segments.push(Segment::literal(&format!("{n:06}.json")).expect("valid"));
    LakeFile {
        path: LakePath::new(segments).expect("non-empty"),
        contents: format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(n % 97)).into_bytes(),
    }
}

/// Another writer's file at `mine`'s path, of the same length but other bytes (a
/// compaction claim a rival pass took), stored on the server directly; a lost answer on
/// `fault` (`ApplyThenDrop`, once) then hides whose file it is from the next store of
/// `mine`.
pub fn rival_in_place(
    server: &DfsServer,
    mine: &LakeFile,
    fault: dfs_test_server::OpKind,
) -> LakeFile {
    let rival = LakeFile {
        path: mine.path.clone(),
        contents: mine.contents.iter().map(|b| b.wrapping_add(1)).collect(),
    };
    server.put_file(FILESYSTEM, &rival.path.to_string(), rival.contents.clone());
    server.faults().push(
        dfs_test_server::FaultRule::new(fault, dfs_test_server::FaultAction::ApplyThenDrop)
            .times(1),
    );
    rival
}

/// A well-formed account key that is not the account's.
pub fn wrong_key() -> Credential {
    Credential::AccountKey(Secret::new(
        "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgd3Jvbmcga2V5IHdyb25nIGtleQ==",
    ))
}

/// The account key the server checks Shared Key signatures with.
pub fn key() -> Credential {
    Credential::AccountKey(Secret::new(DEV_ACCOUNT_KEY))
}

/// A DFS test server with the lake's container, as the handler's ADLS tests start it.
pub async fn server_with_container() -> DfsServer {
    DfsServer::builder()
        .filesystem(super::CONTAINER)
        .start()
        .await
        .expect("DFS server starts")
}
