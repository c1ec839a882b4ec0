//! The real client (`azure_storage_datalake` 0.21) against the server: every call the ADLS
//! sink makes, with each way of authorizing.

mod common;

use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_storage::prelude::StorageCredentials;
use azure_storage::shared_access_signature::account_sas::{
    AccountSasPermissions, AccountSasResource, AccountSasResourceType, AccountSharedAccessSignature,
};
use azure_storage::shared_access_signature::SasToken;
use common::*;
use dfs_test_server::{Auth, DfsServer, OpKind, PathKind, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_key_lifecycle() {
    let server = DfsServer::builder().start().await.unwrap();
    let dl = client(&server, key_credentials());
    let fs = dl.file_system_client("lake");

    // Filesystem: create, again (409), properties.
    let created = fs.create().await.unwrap();
    assert!(created.namespace_enabled);
    assert_eq!(
        code(&fs.create().await.unwrap_err()),
        (409, "FilesystemAlreadyExists".into())
    );
    let props = fs.get_properties().await.unwrap();
    assert_eq!(props.etag, created.etag);
    let missing = dl.file_system_client("nope");
    assert_eq!(
        code(&missing.get_properties().await.unwrap_err()),
        (404, "FilesystemNotFound".into())
    );
    let in_missing = missing.get_file_client("a.json");
    assert_eq!(
        code(&in_missing.create().await.unwrap_err()),
        (404, "FilesystemNotFound".into())
    );

    // Create a temporary file: parents appear, the file is visible at once with length 0.
    let tmp = fs.get_file_client("db/coll/_tmp/one.json.tmp");
    tmp.create_if_not_exists().await.unwrap();
    assert_eq!(
        server.kind("lake", "db/coll/_tmp"),
        Some(PathKind::Directory)
    );
    assert_eq!(tmp.get_properties().await.unwrap().content_length, Some(0));
    assert_eq!(
        code(&tmp.create_if_not_exists().await.unwrap_err()),
        (409, "PathAlreadyExists".into())
    );

    // Append stages; flush commits.
    let body = br#"{"_id":1,"name":"caf\u00e9"}"#.to_vec();
    let n = body.len() as i64;
    tmp.append(0, body.clone()).await.unwrap();
    assert_eq!(
        server.staged_len("lake", "db/coll/_tmp/one.json.tmp"),
        Some(n as u64)
    );
    assert_eq!(
        server
            .read("lake", "db/coll/_tmp/one.json.tmp")
            .unwrap()
            .len(),
        0
    );
    assert_eq!(tmp.get_properties().await.unwrap().content_length, Some(0));
    assert_eq!(
        code(&tmp.flush(n + 1).close(true).await.unwrap_err()),
        (400, "InvalidFlushPosition".into())
    );
    let flushed = tmp.flush(n).close(true).await.unwrap();
    assert!(flushed.etag.is_some());
    assert_eq!(
        server.read("lake", "db/coll/_tmp/one.json.tmp").unwrap(),
        body
    );
    assert_eq!(
        server.staged_len("lake", "db/coll/_tmp/one.json.tmp"),
        Some(0)
    );

    // Rename onto the final name (its parent exists).
    tmp.rename_if_not_exists("db/coll/one.json").await.unwrap();
    assert!(!server.exists("lake", "db/coll/_tmp/one.json.tmp"));
    assert_eq!(server.read("lake", "db/coll/one.json").unwrap(), body);

    let file = fs.get_file_client("db/coll/one.json");
    let p = file.get_properties().await.unwrap();
    assert_eq!(p.content_length, Some(n));
    assert!(p.etag.starts_with("\"0x8D"));
    let got = file.read().await.unwrap();
    assert_eq!(got.data, body);
    let range = got.content_range.unwrap();
    assert_eq!(
        (range.start(), range.end(), range.total_length()),
        (0, n as u64 - 1, n as u64)
    );

    // The destination exists: 409.
    let tmp2 = fs.get_file_client("db/coll/_tmp/two.tmp");
    tmp2.create().await.unwrap();
    assert_eq!(
        code(
            &tmp2
                .rename_if_not_exists("db/coll/one.json")
                .await
                .unwrap_err()
        ),
        (409, "PathAlreadyExists".into())
    );
    // The destination's parent is missing: 404 (rename creates no parents).
    assert_eq!(
        code(
            &tmp2
                .rename_if_not_exists("db/other/two.json")
                .await
                .unwrap_err()
        ),
        (404, "RenameDestinationParentPathNotFound".into())
    );
    // The source is missing: 404.
    let gone = fs.get_file_client("db/coll/_tmp/gone.tmp");
    assert_eq!(
        code(
            &gone
                .rename_if_not_exists("db/coll/gone.json")
                .await
                .unwrap_err()
        ),
        (404, "SourcePathNotFound".into())
    );
    // Plain rename (no condition) overwrites a file.
    tmp2.rename("db/coll/one.json").await.unwrap();
    assert_eq!(server.read("lake", "db/coll/one.json").unwrap().len(), 0);

    // An empty file cannot be read with the client: it always asks for a range, and the
    // service answers 416 for a range on an empty file.
    assert_eq!(
        code(&file.read().await.unwrap_err()),
        (416, "InvalidRange".into())
    );

    // Listing.
    let mut pages = fs.list_paths().into_stream();
    let page = pages.next().await.unwrap().unwrap();
    let names: Vec<_> = page
        .paths
        .iter()
        .map(|p| (p.name.as_str(), p.is_directory))
        .collect();
    assert_eq!(
        names,
        [
            ("db", true),
            ("db/coll", true),
            ("db/coll/_tmp", true),
            ("db/coll/one.json", false)
        ]
    );

    // DirectoryClient::list_paths sends `directory=` the URL path of the directory
    // (`/devstoreaccount1/lake/db`, with the public endpoint `/lake/db`), not the path inside
    // the filesystem, so the service finds no such directory.
    let e = fs
        .get_directory_client("db")
        .list_paths()
        .into_stream()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(code(&e), (404, "PathNotFound".into()));

    // Delete (into_stream: `.delete().await` recurses until the stack overflows in 0.21).
    let dir = fs.get_directory_client("db/coll");
    assert_eq!(
        code(
            &dir.delete(false)
                .into_stream()
                .next()
                .await
                .unwrap()
                .unwrap_err()
        ),
        (409, "DirectoryNotEmpty".into())
    );
    file.delete().into_stream().next().await.unwrap().unwrap();
    assert_eq!(
        code(&file.get_properties().await.unwrap_err()),
        (404, "PathNotFound".into())
    );
    assert_eq!(
        code(
            &file
                .delete()
                .into_stream()
                .next()
                .await
                .unwrap()
                .unwrap_err()
        ),
        (404, "PathNotFound".into())
    );
    dir.delete(true)
        .into_stream()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        server
            .paths("lake")
            .iter()
            .map(|p| p.path.as_str())
            .collect::<Vec<_>>(),
        ["db"]
    );

    fs.delete().await.unwrap();
    assert!(server.filesystems().is_empty());
    assert_eq!(
        code(&fs.get_properties().await.unwrap_err()),
        (404, "FilesystemNotFound".into())
    );

    let stats = server.stats();
    assert!(stats.op(OpKind::Rename) >= 5);
    assert_eq!(stats.op(OpKind::Flush), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_and_wrong_account_are_refused() {
    let server = DfsServer::builder()
        .filesystem("lake")
        .start()
        .await
        .unwrap();
    let other_key =
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
    let dl = client(
        &server,
        StorageCredentials::access_key(DEV_ACCOUNT, Secret::new(other_key)),
    );
    let f = dl.file_system_client("lake").get_file_client("a.json");
    assert_eq!(
        code(&f.create().await.unwrap_err()),
        (403, "AuthenticationFailed".into())
    );
    let e = f.create().await.unwrap_err();
    let body = format!("{:?}", e.as_http_error().unwrap());
    assert!(
        body.contains("Server failed to authenticate the request"),
        "{body}"
    );
    // HEAD errors have no body, only the header.
    assert_eq!(
        code(&f.get_properties().await.unwrap_err()),
        (403, "AuthenticationFailed".into())
    );

    let dl = client(
        &server,
        StorageCredentials::access_key("someoneelse", Secret::new(DEV_ACCOUNT_KEY)),
    );
    let f = dl.file_system_client("lake").get_file_client("a.json");
    assert_eq!(
        code(&f.create().await.unwrap_err()),
        (403, "AuthenticationFailed".into())
    );

    let dl = client(&server, StorageCredentials::anonymous());
    let f = dl.file_system_client("lake").get_file_client("a.json");
    assert_eq!(
        code(&f.create().await.unwrap_err()),
        (401, "NoAuthenticationInformation".into())
    );
    assert!(!server.exists("lake", "a.json"));
}

/// A per-call policy that back-dates `x-ms-date` before the client signs the request.
#[derive(Debug)]
struct OldDate;

#[async_trait::async_trait]
impl azure_core::Policy for OldDate {
    async fn send(
        &self,
        ctx: &azure_core::Context,
        request: &mut azure_core::Request,
        next: &[Arc<dyn azure_core::Policy>],
    ) -> azure_core::PolicyResult {
        let old = std::time::SystemTime::now() - Duration::from_secs(20 * 60);
        request.insert_header("x-ms-date", httpdate_fmt(old));
        next[0].send(ctx, request, &next[1..]).await
    }
}

fn httpdate_fmt(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap()
        .replace("+0000", "GMT")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correctly_signed_but_stale_request_is_refused() {
    let server = DfsServer::builder()
        .filesystem("lake")
        .start()
        .await
        .unwrap();
    let options = azure_core::ClientOptions::default()
        .retry(azure_core::RetryOptions::none())
        .per_call_policies(vec![Arc::new(OldDate) as Arc<dyn azure_core::Policy>]);
    let dl = azure_storage_datalake::prelude::DataLakeClientBuilder::with_location(
        location(&server),
        key_credentials(),
    )
    .client_options(options)
    .build();
    let f = dl.file_system_client("lake").get_file_client("a.json");
    let e = f.create().await.unwrap_err();
    assert_eq!(code(&e), (403, "AuthenticationFailed".into()));
    assert!(format!("{e:?}").contains("too old"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens() {
    let server = DfsServer::builder()
        .bearer_token("good-token")
        .bearer_token_without_permission("reader-token")
        .start()
        .await
        .unwrap();
    let dl = client(&server, StorageCredentials::bearer_token("good-token"));
    let fs = dl.file_system_client("lake");
    fs.create().await.unwrap();
    let f = fs.get_file_client("d/x.json");
    f.create_if_not_exists().await.unwrap();
    f.append(0, b"{}".to_vec()).await.unwrap();
    f.flush(2).close(true).await.unwrap();
    f.rename_if_not_exists("d/y.json").await.unwrap();
    assert_eq!(server.read_string("lake", "d/y.json").unwrap(), "{}");

    // Authenticates, but has no data role: fail fast with 403.
    let dl = client(&server, StorageCredentials::bearer_token("reader-token"));
    let e = dl
        .file_system_client("lake")
        .get_properties()
        .await
        .unwrap_err();
    assert_eq!(code(&e), (403, "AuthorizationPermissionMismatch".into()));
    let f = dl.file_system_client("lake").get_file_client("d/z.json");
    assert_eq!(
        code(&f.create().await.unwrap_err()),
        (403, "AuthorizationPermissionMismatch".into())
    );

    // Unknown token.
    let dl = client(&server, StorageCredentials::bearer_token("forged"));
    let f = dl.file_system_client("lake").get_file_client("d/z.json");
    assert_eq!(
        code(&f.create().await.unwrap_err()),
        (401, "InvalidAuthenticationInfo".into())
    );

    // Shared Key is not accepted by this server (bearer only).
    let dl = client(&server, key_credentials());
    let f = dl.file_system_client("lake").get_file_client("d/z.json");
    assert_eq!(
        code(&f.create().await.unwrap_err()),
        (403, "KeyBasedAuthenticationNotPermitted".into())
    );
    assert!(!server.exists("lake", "d/z.json"));
}

/// A token credential handing out a fixed token, as a managed identity would a real one.
#[derive(Debug)]
struct FixedToken(&'static str);

#[async_trait::async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        assert_eq!(scopes, ["https://storage.azure.com/.default"]);
        Ok(AccessToken::new(
            self.0,
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_credential() {
    let server = DfsServer::builder()
        .auth(Auth::Bearer(vec!["mi-token".into()]))
        .filesystem("lake")
        .start()
        .await
        .unwrap();
    let dl = client(
        &server,
        StorageCredentials::token_credential(Arc::new(FixedToken("mi-token"))),
    );
    let f = dl.file_system_client("lake").get_file_client("a.json");
    f.create().await.unwrap();
    assert!(server.file_exists("lake", "a.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_sas() {
    let server = DfsServer::builder().start().await.unwrap();
    let dl = client(
        &server,
        StorageCredentials::sas_token(server.account_sas("racwdl")).unwrap(),
    );
    let fs = dl.file_system_client("lake");
    fs.create().await.unwrap();
    let f = fs.get_file_client("d/x.tmp");
    f.create_if_not_exists().await.unwrap();
    f.append(0, b"abc".to_vec()).await.unwrap();
    f.flush(3).close(true).await.unwrap();
    assert_eq!(f.read().await.unwrap().data, b"abc".as_slice());
    let page = fs.list_paths().into_stream().next().await.unwrap().unwrap();
    assert_eq!(page.paths.len(), 2);

    // The service authorizes a rename's source with a SAS of its own, appended to
    // x-ms-rename-source; the 0.21 client sends none, so a SAS-authorized rename fails.
    let e = f.rename_if_not_exists("d/x.json").await.unwrap_err();
    assert_eq!(code(&e), (403, "AuthorizationPermissionMismatch".into()));
    assert!(server.file_exists("lake", "d/x.tmp"));

    f.delete().into_stream().next().await.unwrap().unwrap();
    assert!(!server.exists("lake", "d/x.tmp"));

    // Read-only SAS: writes refused with the permission code.
    let ro = client(
        &server,
        StorageCredentials::sas_token(server.account_sas("rl")).unwrap(),
    );
    let g = ro.file_system_client("lake").get_file_client("d/y.json");
    assert_eq!(
        code(&g.create().await.unwrap_err()),
        (403, "AuthorizationPermissionMismatch".into())
    );

    // Expired.
    let mut expired = dfs_test_server::AccountSas::new("racwdl", Duration::from_secs(60));
    expired.start = Some(std::time::SystemTime::now() - Duration::from_secs(7200));
    expired.expiry = std::time::SystemTime::now() - Duration::from_secs(3600);
    let dl = client(
        &server,
        StorageCredentials::sas_token(expired.token(DEV_ACCOUNT, DEV_ACCOUNT_KEY)).unwrap(),
    );
    let g = dl.file_system_client("lake").get_file_client("d/y.json");
    assert_eq!(
        code(&g.create().await.unwrap_err()),
        (403, "AuthenticationFailed".into())
    );

    // Tampered: permissions widened after signing.
    let forged = server.account_sas("r").replace("sp=r", "sp=rw");
    let dl = client(&server, StorageCredentials::sas_token(forged).unwrap());
    let g = dl.file_system_client("lake").get_file_client("d/y.json");
    assert_eq!(
        code(&g.create().await.unwrap_err()),
        (403, "AuthenticationFailed".into())
    );

    // HTTPS-only SAS over plain HTTP.
    let mut https_only = dfs_test_server::AccountSas::new("racwdl", Duration::from_secs(600));
    https_only.protocol = Some("https".into());
    let dl = client(
        &server,
        StorageCredentials::sas_token(https_only.token(DEV_ACCOUNT, DEV_ACCOUNT_KEY)).unwrap(),
    );
    let g = dl.file_system_client("lake").get_file_client("d/y.json");
    assert_eq!(
        code(&g.create().await.unwrap_err()),
        (403, "AuthorizationProtocolMismatch".into())
    );

    // Object-only SAS: filesystem operations refused with the resource-type code.
    let mut objects = dfs_test_server::AccountSas::new("racwdl", Duration::from_secs(600));
    objects.resource_types = "o".into();
    let dl = client(
        &server,
        StorageCredentials::sas_token(objects.token(DEV_ACCOUNT, DEV_ACCOUNT_KEY)).unwrap(),
    );
    let e = dl
        .file_system_client("lake")
        .get_properties()
        .await
        .unwrap_err();
    assert_eq!(code(&e), (403, "AuthorizationResourceTypeMismatch".into()));
    assert!(!server.exists("lake", "d/y.json"));
}

/// The client crate's own account SAS (version 2018-11-09, the nine-line string-to-sign).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_sas_made_by_the_client_crate() {
    let server = DfsServer::builder()
        .filesystem("lake")
        .start()
        .await
        .unwrap();
    let sas = AccountSharedAccessSignature::new(
        DEV_ACCOUNT.to_owned(),
        Secret::new(DEV_ACCOUNT_KEY),
        AccountSasResource::Blob,
        AccountSasResourceType::Object,
        time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        AccountSasPermissions {
            read: true,
            write: true,
            create: true,
            ..Default::default()
        },
    )
    .token()
    .unwrap();
    let dl = client(&server, StorageCredentials::sas_token(sas).unwrap());
    let f = dl.file_system_client("lake").get_file_client("a.json");
    f.create().await.unwrap();
    f.append(0, b"1".to_vec()).await.unwrap();
    f.flush(1).await.unwrap();
    assert_eq!(server.read_string("lake", "a.json").unwrap(), "1");
    // No `d` in the SAS.
    assert_eq!(
        code(&f.delete().into_stream().next().await.unwrap().unwrap_err()),
        (403, "AuthorizationPermissionMismatch".into())
    );
}

/// What the 0.21 client puts on the wire for awkward names, and what the service makes of it.
///
/// The client builds a path's URL with `Url::join("/<account>/<fs>/" + name)`:
/// - a space and non-ASCII characters are percent-encoded (`%20`, UTF-8 `%C3%A9`): fine;
/// - `+` is sent as is and means `+`: fine;
/// - `#` starts the URL fragment, which is never sent: `h#1.json` is created as `h`;
/// - `?` starts the query: `q?x=1.json` is created as `q` (the service ignores the stray
///   `x` query parameter; with Shared Key the client signs it, so the request is accepted);
/// - `%` is sent raw: `p%41.json` is decoded by the service to `pA.json`, and a `%` not
///   followed by two hex digits (`100%.json`) makes the URI invalid: 400 `InvalidUri`.
///
/// The rename source (`x-ms-rename-source`) is form-urlencoded by the client instead:
/// `/` becomes `%2F`, non-ASCII `%XX`, `+` `%2B`, but a space becomes `+`, which the service
/// reads as a literal `+`: renaming `a b.tmp` looks for `a+b.tmp`: 404 `SourcePathNotFound`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names() {
    let server = DfsServer::builder()
        .filesystem("lake")
        .record_requests()
        .start()
        .await
        .unwrap();
    let dl = client(&server, key_credentials());
    let fs = dl.file_system_client("lake");
    let last = || server.requests().pop().unwrap();
    let create = |name: &str| {
        let f = fs.get_file_client(name);
        async move { f.create().await.map(|_| ()) }
    };

    create("sp ace/a b.json").await.unwrap();
    assert_eq!(
        last().uri,
        "/devstoreaccount1/lake/sp%20ace/a%20b.json?resource=file"
    );
    assert!(server.file_exists("lake", "sp ace/a b.json"));
    create("uni/é日本.json").await.unwrap();
    assert_eq!(
        last().uri,
        "/devstoreaccount1/lake/uni/%C3%A9%E6%97%A5%E6%9C%AC.json?resource=file"
    );
    assert!(server.file_exists("lake", "uni/é日本.json"));
    create("plus/a+b.json").await.unwrap();
    assert_eq!(
        last().uri,
        "/devstoreaccount1/lake/plus/a+b.json?resource=file"
    );
    assert!(server.file_exists("lake", "plus/a+b.json"));

    create("hash/h#1.json").await.unwrap();
    assert_eq!(last().uri, "/devstoreaccount1/lake/hash/h?resource=file");
    assert!(server.file_exists("lake", "hash/h"));
    assert!(!server.exists("lake", "hash/h#1.json"));

    create("query/q?x=1.json").await.unwrap();
    assert_eq!(
        last().uri,
        "/devstoreaccount1/lake/query/q?x=1.json&resource=file"
    );
    assert!(server.file_exists("lake", "query/q"));
    assert!(!server.exists("lake", "query/q?x=1.json"));

    create("pct/p%41.json").await.unwrap();
    assert_eq!(
        last().uri,
        "/devstoreaccount1/lake/pct/p%41.json?resource=file"
    );
    assert!(server.file_exists("lake", "pct/pA.json"));
    assert_eq!(
        code(&create("pct/100%.json").await.unwrap_err()),
        (400, "InvalidUri".into())
    );

    // Rename sources.
    let f = fs.get_file_client("sp ace/a b.json");
    assert_eq!(
        code(
            &f.rename_if_not_exists("sp ace/a b.final")
                .await
                .unwrap_err()
        ),
        (404, "SourcePathNotFound".into())
    );
    let r = last();
    assert_eq!(
        r.uri,
        "/devstoreaccount1/lake/sp%20ace/a%20b.final?mode=legacy"
    );
    assert_eq!(
        r.header("x-ms-rename-source"),
        Some("%2Fdevstoreaccount1%2Flake%2Fsp+ace%2Fa+b.json")
    );
    assert_eq!(r.header("if-none-match"), Some("*"));
    assert!(server.file_exists("lake", "sp ace/a b.json"));
    // A space anywhere in the source path, directories included, has the same fate.
    create("sp ace/plain.json").await.unwrap();
    let e = fs
        .get_file_client("sp ace/plain.json")
        .rename_if_not_exists("plain.json")
        .await
        .unwrap_err();
    assert_eq!(code(&e), (404, "SourcePathNotFound".into()));
    // A destination with a space is in the URL, so it is fine.
    create("plain/p.json").await.unwrap();
    fs.get_file_client("plain/p.json")
        .rename_if_not_exists("sp ace/x y.json")
        .await
        .unwrap();
    assert!(server.file_exists("lake", "sp ace/x y.json"));
    fs.get_file_client("uni/é日本.json")
        .rename_if_not_exists("uni/ü.json")
        .await
        .unwrap();
    assert_eq!(
        last().header("x-ms-rename-source"),
        Some("%2Fdevstoreaccount1%2Flake%2Funi%2F%C3%A9%E6%97%A5%E6%9C%AC.json")
    );
    assert!(server.file_exists("lake", "uni/ü.json"));
    fs.get_file_client("plus/a+b.json")
        .rename_if_not_exists("plus/c+d.json")
        .await
        .unwrap();
    assert_eq!(
        last().header("x-ms-rename-source"),
        Some("%2Fdevstoreaccount1%2Flake%2Fplus%2Fa%2Bb.json")
    );
    assert!(server.file_exists("lake", "plus/c+d.json"));
}

#[test]
fn server_on_its_own_thread() {
    let server = DfsServer::builder()
        .filesystem("lake")
        .start_in_thread()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dl = client(&server, key_credentials());
        let f = dl.file_system_client("lake").get_file_client("t.json");
        f.create().await.unwrap();
        f.append(0, b"x".to_vec()).await.unwrap();
        f.flush(1).close(true).await.unwrap();
    });
    assert_eq!(server.read_string("lake", "t.json").unwrap(), "x");
    let port = server.port();
    drop(server);
    // Stopped: the port no longer accepts (give the thread a moment).
    std::thread::sleep(Duration::from_millis(200));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
