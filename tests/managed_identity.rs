//! A user-assigned managed identity (`AZURE_CLIENT_ID`, `STORAGE_IDENTITY_OBJECT_ID`)
//! through the `azure_identity` 1.x bridge, against a stand-in for the App Service identity
//! endpoint on loopback: the token and its expiry reach the 0.21 storage client, the id and
//! the header secret are sent, a refusal fails at once and a busy endpoint is retried; and
//! the handler writes (one Put Blob per file, the default protocol) to a DFS server that
//! accepts only the identity's token.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use dfs_test_server::DfsServer;
use mongo_lake_ingest::configuration::{AdlsSettings, EntraIdentity, UserAssigned};
use mongo_lake_ingest::domain::{LakePath, Segment};
use mongo_lake_ingest::sink::{identity_credential, AdlsSink, LakeFile, Sink, SinkError};
use support::handler::{storage_failure, Handler};
use support::identity::{Answer, IdentityEndpoint, EXPIRES_ON, HEADER_SECRET};
use support::sample;

/// One identity per test, so each test counts only its own token requests.
const BY_CLIENT_ID: &str = "11111111-1111-4111-8111-111111111111";
const BY_OBJECT_ID: &str = "22222222-2222-4222-8222-222222222222";
const NOT_ASSIGNED: &str = "33333333-3333-4333-8333-333333333333";
const BUSY: &str = "44444444-4444-4444-8444-444444444444";
const HANDLER: &str = "55555555-5555-4555-8555-555555555555";
const STRANGER: &str = "66666666-6666-4666-8666-666666666666";
/// The token the DFS servers accept.
const GOOD_TOKEN: &str = "user-assigned-token";
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
const FILESYSTEM: &str = "mongodb";

/// The identity endpoint, shared by every test of this binary: the managed identity
/// credential reads `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` from the process's
/// environment, so they are set once, before any credential is built (every test calls
/// this first).
fn endpoint() -> &'static IdentityEndpoint {
    static ENDPOINT: OnceLock<IdentityEndpoint> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let answers: HashMap<String, Answer> = [
            (BY_CLIENT_ID, Answer::Token("client-id-token")),
            (BY_OBJECT_ID, Answer::Token("object-id-token")),
            (BUSY, Answer::Status(500)),
            (HANDLER, Answer::Token(GOOD_TOKEN)),
            (STRANGER, Answer::Token("a-token-storage-refuses")),
        ]
        .into_iter()
        .map(|(id, answer)| (id.to_owned(), answer))
        .collect();
        let endpoint = IdentityEndpoint::start_in_thread(answers);
        std::env::set_var("IDENTITY_ENDPOINT", endpoint.url());
        std::env::set_var("IDENTITY_HEADER", HEADER_SECRET);
        endpoint
    })
}

fn user_assigned(id: UserAssigned) -> EntraIdentity {
    EntraIdentity::UserAssigned(id)
}

async fn dfs_server() -> DfsServer {
    DfsServer::builder()
        .filesystem(FILESYSTEM)
        .bearer_token(GOOD_TOKEN)
        .start()
        .await
        .expect("DFS server starts")
}

/// A sink on `server` for the identity `client_id`, with a retry budget of `budget`.
fn sink_for(server: &DfsServer, client_id: &str, budget: Duration) -> AdlsSink {
    let identity = user_assigned(UserAssigned::ClientId(client_id.into()));
    let mut settings =
        AdlsSettings::entra("TEST_ENDPOINT", &server.endpoint(), &identity).expect("endpoint");
    settings.retry_budget = budget;
    settings.request_timeout = Duration::from_secs(2);
    let credential = identity_credential(&identity).expect("credential");
    let directory = [Segment::literal("changes").expect("valid")];
    AdlsSink::with_token_credential(&settings, credential, FILESYSTEM, &directory)
        .expect("client builds")
}

fn one_file() -> Vec<LakeFile> {
    let path = ["changes", "db", "a.json"]
        .map(|name| Segment::literal(name).expect("valid"))
        .to_vec();
    vec![LakeFile {
        path: LakePath::new(path).expect("non-empty"),
        contents: b"{\"a\":1}\n".to_vec(),
    }]
}

#[tokio::test]
async fn a_client_id_gets_its_token_and_expiry_through_the_bridge() {
    let endpoint = endpoint();
    let credential =
        identity_credential(&user_assigned(UserAssigned::ClientId(BY_CLIENT_ID.into())))
            .expect("credential");
    let token = credential.get_token(&[STORAGE_SCOPE]).await.expect("token");
    assert_eq!(token.token.secret(), "client-id-token");
    assert_eq!(token.expires_on.unix_timestamp(), EXPIRES_ON);

    let again = credential.get_token(&[STORAGE_SCOPE]).await.expect("token");
    assert_eq!(again.token.secret(), "client-id-token");
    let seen = endpoint.seen_for(BY_CLIENT_ID);
    assert_eq!(seen.len(), 1, "the second token comes from the cache");
    let request = &seen[0];
    assert_eq!(request.header.as_deref(), Some(HEADER_SECRET));
    assert_eq!(request.query["client_id"], BY_CLIENT_ID);
    assert!(!request.query.contains_key("object_id"));
    assert_eq!(request.query["resource"], "https://storage.azure.com");
    assert_eq!(request.query["api-version"], "2019-08-01");
}

#[tokio::test]
async fn an_object_id_is_sent_as_object_id() {
    let endpoint = endpoint();
    let credential =
        identity_credential(&user_assigned(UserAssigned::ObjectId(BY_OBJECT_ID.into())))
            .expect("credential");
    let token = credential.get_token(&[STORAGE_SCOPE]).await.expect("token");
    assert_eq!(token.token.secret(), "object-id-token");
    let seen = endpoint.seen_for(BY_OBJECT_ID);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].query["object_id"], BY_OBJECT_ID);
    assert!(!seen[0].query.contains_key("client_id"));
    assert_eq!(seen[0].header.as_deref(), Some(HEADER_SECRET));
}

/// Stores one file on a fresh DFS server as the identity `client_id`, with a retry budget of
/// `budget`; it must fail: its detail, and whether it was retryable.
async fn failed_store(client_id: &str, budget: Duration) -> (String, bool) {
    let server = dfs_server().await;
    let results = sink_for(&server, client_id, budget)
        .store_all(one_file())
        .await;
    assert!(server.files(FILESYSTEM).is_empty());
    match results.into_iter().next() {
        Some(Err(SinkError::Storage {
            detail, retryable, ..
        })) => (detail, retryable),
        other => panic!("a storage error: {other:?}"),
    }
}

#[tokio::test]
async fn an_identity_not_assigned_fails_at_once_saying_what_to_fix() {
    let endpoint = endpoint();
    // A generous budget: a retry would show as a second token request.
    let (detail, retryable) = failed_store(NOT_ASSIGNED, Duration::from_secs(20)).await;
    assert!(!retryable, "a refusal repeats until someone acts: {detail}");
    assert!(detail.contains("Entra ID token"), "{detail}");
    assert!(detail.contains("400"), "{detail}");
    assert!(detail.contains("AZURE_CLIENT_ID"), "{detail}");
    assert_eq!(endpoint.seen_for(NOT_ASSIGNED).len(), 1, "not retried");
}

#[tokio::test]
async fn a_busy_identity_endpoint_is_retried_until_the_budget_ends() {
    let endpoint = endpoint();
    let (detail, retryable) = failed_store(BUSY, Duration::from_secs(2)).await;
    assert!(retryable, "a 500 may pass: {detail}");
    assert!(detail.contains("500"), "{detail}");
    assert!(detail.contains("busy or unreachable"), "{detail}");
    assert!(endpoint.seen_for(BUSY).len() >= 2, "retried");
}

/// The handler with `STORAGE_AUTH=identity` and `AZURE_CLIENT_ID=client_id`, on `server`,
/// its identity endpoint set as the Functions host sets it.
fn handler_with_identity(server: &DfsServer, client_id: &str) -> Handler {
    let endpoint = endpoint();
    // The default write protocol: Put Blob on the Blob endpoint, with the bridge's token.
    Handler::start_on_blob(
        server,
        &[
            ("STORAGE_AUTH", "identity"),
            ("AZURE_CLIENT_ID", client_id),
            ("IDENTITY_ENDPOINT", &endpoint.url()),
            ("IDENTITY_HEADER", HEADER_SECRET),
        ],
    )
}

#[tokio::test]
async fn the_handler_writes_with_the_user_assigned_identity() {
    let server = dfs_server().await;
    let handler = handler_with_identity(&server, HANDLER);
    let answer = handler.post_json(sample("insert.json")).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    let stored: Vec<_> = server
        .files(FILESYSTEM)
        .into_iter()
        .filter(|entry| entry.path.starts_with("changes/") && !entry.path.contains("/_tmp/"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let seen = endpoint().seen_for(HANDLER);
    assert!(!seen.is_empty());
    assert!(seen
        .iter()
        .all(|request| request.header.as_deref() == Some(HEADER_SECRET)));
    handler.terminate();
    let (code, log) = handler.wait();
    assert_eq!(code, Some(0));
    let log = log.join("\n");
    assert!(
        !log.contains(GOOD_TOKEN) && !log.contains(HEADER_SECRET),
        "no secrets in logs"
    );
}

#[tokio::test]
async fn a_token_storage_refuses_answers_503_naming_the_role() {
    let server = dfs_server().await;
    let handler = handler_with_identity(&server, STRANGER);
    let answer = handler.post_json(sample("insert.json")).await;
    assert_eq!(answer.status(), 503);
    handler.terminate();
    let (_, log) = handler.wait();
    let failure = storage_failure(&log);
    assert!(failure.contains("token was refused"), "{failure}");
    assert!(server.files(FILESYSTEM).is_empty());
}

#[test]
fn a_resource_id_stops_start_up_naming_the_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_handler"))
        .env_clear()
        .env("STORAGE_ACCOUNT_NAME", "lakeacct")
        .env("STORAGE_AUTH", "identity")
        .env(
            "AZURE_CLIENT_ID",
            "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/lake",
        )
        .output()
        .expect("handler runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("AZURE_CLIENT_ID") && stderr.contains("resource id"),
        "{stderr}"
    );
}
