//! The protocol at the HTTP level (requests authorized with an account SAS in the query):
//! answers' shapes and the service's rules the client tests do not reach.

mod common;

use dfs_test_server::{Auth, DfsServer, PathKind};
use reqwest::{Method, StatusCode};
use serde_json::Value;

struct T {
    server: DfsServer,
    http: reqwest::Client,
    sas: String,
}

impl T {
    async fn new() -> T {
        let server = DfsServer::builder()
            .filesystem("lake")
            .start()
            .await
            .unwrap();
        let sas = server.account_sas("racwdl");
        T {
            server,
            http: reqwest::Client::new(),
            sas,
        }
    }

    fn url(&self, path: &str, query: &str) -> String {
        common::sas_url(&self.server, path, &self.sas, query)
    }

    fn req(&self, m: Method, path: &str, query: &str) -> reqwest::RequestBuilder {
        self.http.request(m, self.url(path, query))
    }

    async fn send(&self, m: Method, path: &str, query: &str) -> reqwest::Response {
        self.req(m, path, query).send().await.unwrap()
    }
}

async fn json(r: reqwest::Response) -> Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

fn error_code(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-ms-error-code")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn expect(r: reqwest::Response, status: u16, code: &str) {
    let got = (r.status().as_u16(), error_code(&r));
    let body = r.text().await.unwrap();
    assert_eq!(got, (status, code.to_owned()), "{body}");
}

#[tokio::test]
async fn error_answers_have_the_service_shape() {
    let t = T::new().await;
    let r = t
        .req(Method::GET, "lake/missing.json", "")
        .header("x-ms-version", "2021-08-06")
        .header("x-ms-client-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let h = r.headers().clone();
    assert_eq!(h["x-ms-error-code"], "PathNotFound");
    assert_eq!(h["content-type"], "application/json;charset=utf-8");
    assert_eq!(h["x-ms-version"], "2021-08-06");
    assert_eq!(h["x-ms-client-request-id"], "abc-123");
    assert_eq!(h["server"], "Windows-Azure-HDFS/1.0 Microsoft-HTTPAPI/2.0");
    assert!(h["date"].to_str().unwrap().ends_with(" GMT"));
    let id = h["x-ms-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36);
    let body: Value = json(r).await;
    assert_eq!(body["error"]["code"], "PathNotFound");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "The specified path does not exist.\nRequestId:{id}\nTime:"
        )),
        "{msg}"
    );

    // HEAD: the code in the header, no body.
    let r = t.send(Method::HEAD, "lake/missing.json", "").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&r), "PathNotFound");
    assert_eq!(r.bytes().await.unwrap().len(), 0);

    // Missing filesystem.
    expect(
        t.send(Method::HEAD, "nope/x", "").await,
        404,
        "FilesystemNotFound",
    )
    .await;
    expect(
        t.send(Method::PUT, "nope/x", "resource=file").await,
        404,
        "FilesystemNotFound",
    )
    .await;

    // No credentials at all.
    let r = t
        .http
        .head(format!("{}lake?resource=filesystem", t.server.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&r), "NoAuthenticationInformation");
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer "));
}

#[tokio::test]
async fn head_and_get() {
    let t = T::new().await;
    t.server.put_file("lake", "d/ten.bin", &b"0123456789"[..]);
    let r = t.send(Method::HEAD, "lake/d/ten.bin", "").await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers();
    assert_eq!(h["content-length"], "10");
    assert_eq!(h["x-ms-resource-type"], "file");
    assert!(h["etag"].to_str().unwrap().starts_with("\"0x8DC"));
    assert!(h.contains_key("last-modified"));
    let r = t.send(Method::HEAD, "lake/d", "").await;
    assert_eq!(r.headers()["x-ms-resource-type"], "directory");
    assert_eq!(r.headers()["content-length"], "0");

    let r = t.send(Method::GET, "lake/d/ten.bin", "").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), &b"0123456789"[..]);

    let r = t
        .req(Method::GET, "lake/d/ten.bin", "")
        .header("range", "bytes=2-4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 2-4/10");
    assert_eq!(r.bytes().await.unwrap(), &b"234"[..]);

    // x-ms-range wins over Range; the end is clamped to the length.
    let r = t
        .req(Method::GET, "lake/d/ten.bin", "")
        .header("range", "bytes=0-0")
        .header("x-ms-range", "bytes=7-100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-range"], "bytes 7-9/10");
    assert_eq!(r.bytes().await.unwrap(), &b"789"[..]);

    let r = t
        .req(Method::GET, "lake/d/ten.bin", "")
        .header("x-ms-range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-range"], "bytes */10");
    expect(r, 416, "InvalidRange").await;

    // Conditional reads.
    let etag = t.server.paths("lake")[1].etag.clone();
    let r = t
        .req(Method::GET, "lake/d/ten.bin", "")
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = t
        .req(Method::GET, "lake/d/ten.bin", "")
        .header("if-match", "\"0x8DC000000000001\"")
        .send()
        .await
        .unwrap();
    expect(r, 412, "ConditionNotMet").await;
}

#[tokio::test]
async fn append_and_flush_rules() {
    let t = T::new().await;
    let f = "lake/f.bin";
    expect(
        t.send(Method::PATCH, f, "action=append&position=0").await,
        404,
        "PathNotFound",
    )
    .await;
    assert_eq!(
        t.send(Method::PUT, f, "resource=file").await.status(),
        StatusCode::CREATED
    );

    let append = |pos: u64, data: &'static str| {
        t.req(Method::PATCH, f, &format!("action=append&position={pos}"))
            .body(data)
            .send()
    };
    // Appends may arrive out of order (uploads in parallel); flush wants them contiguous.
    assert_eq!(
        append(5, "world").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    expect(
        t.send(Method::PATCH, f, "action=flush&position=10").await,
        400,
        "InvalidFlushPosition",
    )
    .await;
    assert_eq!(
        append(0, "hello").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(t.server.staged_len("lake", "f.bin"), Some(10));
    expect(
        t.send(Method::PATCH, f, "action=flush&position=11").await,
        400,
        "InvalidFlushPosition",
    )
    .await;
    // Flush part of it, keeping the rest staged.
    let r = t
        .send(
            Method::PATCH,
            f,
            "action=flush&position=5&retainUncommittedData=true",
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(t.server.read_string("lake", "f.bin").unwrap(), "hello");
    assert_eq!(t.server.staged_len("lake", "f.bin"), Some(5));
    let r = t
        .send(Method::PATCH, f, "action=flush&position=10&close=true")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let first = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(t.server.read_string("lake", "f.bin").unwrap(), "helloworld");
    // The same flush again commits nothing and succeeds (with a new ETag, as a repeated
    // Put Block List makes a new version).
    let r = t.send(Method::PATCH, f, "action=flush&position=10").await;
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(etag, first);
    assert_eq!(t.server.read_string("lake", "f.bin").unwrap(), "helloworld");

    // Below the committed length.
    expect(append(3, "x").await.unwrap(), 400, "InvalidFlushPosition").await;
    expect(
        t.send(Method::PATCH, f, "action=flush&position=4").await,
        400,
        "InvalidFlushPosition",
    )
    .await;
    // No data / data on a flush.
    expect(
        t.send(Method::PATCH, f, "action=append&position=10").await,
        400,
        "InvalidHeaderValue",
    )
    .await;
    let r = t
        .req(Method::PATCH, f, "action=flush&position=10")
        .body("x")
        .send()
        .await
        .unwrap();
    expect(r, 400, "ContentLengthMustBeZero").await;
    expect(
        t.send(Method::PATCH, f, "action=flush").await,
        400,
        "MissingRequiredQueryParameter",
    )
    .await;
    expect(
        t.send(Method::PATCH, f, "action=flush&position=x").await,
        400,
        "InvalidQueryParameterValue",
    )
    .await;
    // Conditional flush on a stale ETag.
    let r = t
        .req(Method::PATCH, f, "action=flush&position=10")
        .header("if-match", "\"0x8DC000000000001\"")
        .send()
        .await
        .unwrap();
    expect(r, 412, "ConditionNotMet").await;
    let r = t
        .req(Method::PATCH, f, "action=flush&position=10")
        .header("if-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // append&flush=true in one request.
    let r = t
        .req(Method::PATCH, f, "action=append&position=10&flush=true")
        .body("!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        t.server.read_string("lake", "f.bin").unwrap(),
        "helloworld!"
    );
}

#[tokio::test]
async fn creates_and_type_conflicts() {
    let t = T::new().await;
    assert_eq!(
        t.send(Method::PUT, "lake/a/b/c", "resource=directory")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(t.server.kind("lake", "a/b"), Some(PathKind::Directory));
    // Again: fine for a directory, 409 with If-None-Match: *.
    assert_eq!(
        t.send(Method::PUT, "lake/a/b/c", "resource=directory")
            .await
            .status(),
        StatusCode::CREATED
    );
    let r = t
        .req(Method::PUT, "lake/a/b/c", "resource=directory")
        .header("if-none-match", "*")
        .send()
        .await
        .unwrap();
    expect(r, 409, "PathAlreadyExists").await;
    expect(
        t.send(Method::PUT, "lake/a/b", "resource=file").await,
        409,
        "PathConflict",
    )
    .await;
    t.server.put_file("lake", "a/f", &b"data"[..]);
    expect(
        t.send(Method::PUT, "lake/a/f", "resource=directory").await,
        409,
        "PathConflict",
    )
    .await;
    expect(
        t.send(Method::PUT, "lake/a/f/g", "resource=file").await,
        409,
        "PathConflict",
    )
    .await;
    // Creating over a file without a condition replaces it.
    assert_eq!(
        t.send(Method::PUT, "lake/a/f", "resource=file")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(t.server.read("lake", "a/f").unwrap().len(), 0);
    // If-Match on a missing path.
    let r = t
        .req(Method::PUT, "lake/a/new", "resource=file")
        .header("if-match", "*")
        .send()
        .await
        .unwrap();
    expect(r, 412, "ConditionNotMet").await;
    // A body on a create.
    let r = t
        .req(Method::PUT, "lake/a/x", "resource=file")
        .body("x")
        .send()
        .await
        .unwrap();
    expect(r, 400, "ContentLengthMustBeZero").await;

    // Deleting.
    expect(
        t.send(Method::DELETE, "lake/a", "recursive=false").await,
        409,
        "DirectoryNotEmpty",
    )
    .await;
    assert_eq!(
        t.send(Method::DELETE, "lake/a/f", "").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        t.send(Method::DELETE, "lake/a", "recursive=true")
            .await
            .status(),
        StatusCode::OK
    );
    assert!(t.server.paths("lake").is_empty());
}

#[tokio::test]
async fn renames() {
    let t = T::new().await;
    let s = &t.server;
    s.put_file("lake", "src/x/1.json", &b"1"[..]);
    s.put_file("lake", "src/2.json", &b"2"[..]);
    s.create_dir("lake", "dst");
    let rename = |dest: &str, source: &str| {
        t.req(Method::PUT, &format!("lake/{dest}"), "mode=legacy")
            .header("x-ms-rename-source", source.to_owned())
            .send()
    };
    // A directory moves with everything under it. The source here is the service's
    // documented form, /{filesystem}/{path}, with the SAS appended.
    let src = format!("/lake/src?{}", t.sas);
    assert_eq!(
        rename("dst/moved", &src).await.unwrap().status(),
        StatusCode::CREATED
    );
    let names: Vec<_> = s.paths("lake").into_iter().map(|p| p.path).collect();
    assert_eq!(
        names,
        [
            "dst",
            "dst/moved",
            "dst/moved/2.json",
            "dst/moved/x",
            "dst/moved/x/1.json"
        ]
    );

    let src = format!("/lake/dst?{}", t.sas);
    expect(
        rename("dst/moved/inner", &src).await.unwrap(),
        409,
        "InvalidRenameSourcePath",
    )
    .await;
    let src = format!("/lake/dst/moved/2.json?{}", t.sas);
    expect(
        rename("dst/moved/x", &src).await.unwrap(),
        409,
        "InvalidSourceOrDestinationResourceType",
    )
    .await;
    // Without a SAS on the source (the request itself carries one).
    expect(
        rename("dst/3.json", "/lake/dst/moved/2.json")
            .await
            .unwrap(),
        403,
        "AuthorizationPermissionMismatch",
    )
    .await;
    // A source SAS without delete permission.
    let src = format!("/lake/dst/moved/2.json?{}", s.account_sas("rw"));
    expect(
        rename("dst/3.json", &src).await.unwrap(),
        403,
        "AuthorizationPermissionMismatch",
    )
    .await;
    // A raw space or non-ASCII in the header is not a valid URI.
    let src = format!("/lake/dst/moved/2 .json?{}", t.sas);
    expect(
        rename("dst/3.json", &src).await.unwrap(),
        400,
        "InvalidSourceUri",
    )
    .await;
    // Source conditions.
    let src = format!("/lake/dst/moved/2.json?{}", t.sas);
    let r = t
        .req(Method::PUT, "lake/dst/3.json", "")
        .header("x-ms-rename-source", src.clone())
        .header("x-ms-source-if-match", "\"0x8DC000000000001\"")
        .send()
        .await
        .unwrap();
    expect(r, 412, "SourceConditionNotMet").await;
    // Across filesystems.
    s.create_filesystem("other");
    let r = t
        .http
        .put(common::sas_url(s, "other/3.json", &t.sas, ""))
        .header("x-ms-rename-source", src)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(s.read_string("other", "3.json").unwrap(), "2");
}

#[tokio::test]
async fn listing() {
    let t = T::new().await;
    let s = &t.server;
    for p in ["a/1", "a/2", "a/b/3", "c"] {
        s.put_file("lake", p, &b"xy"[..]);
    }
    let t = &t;
    let list = |q: &'static str| async move {
        let r = t.send(Method::GET, "lake", q).await;
        let cont = r
            .headers()
            .get("x-ms-continuation")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = json(r).await;
        (v, cont)
    };
    let (v, cont) = list("resource=filesystem&recursive=true").await;
    assert!(cont.is_none());
    let names: Vec<_> = v["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a", "a/1", "a/2", "a/b", "a/b/3", "c"]);
    let a = &v["paths"][0];
    assert_eq!(a["isDirectory"], "true");
    assert_eq!(a["contentLength"], "0");
    let one = &v["paths"][1];
    assert!(one.get("isDirectory").is_none());
    assert_eq!(one["contentLength"], "2");
    assert_eq!(one["owner"], "$superuser");
    assert!(one["etag"].as_str().unwrap().starts_with("0x8DC"));

    let (v, _) = list("resource=filesystem&recursive=false&directory=a").await;
    let names: Vec<_> = v["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a/1", "a/2", "a/b"]);

    let (v, cont) = list("resource=filesystem&recursive=true&maxResults=4").await;
    assert_eq!(v["paths"].as_array().unwrap().len(), 4);
    let cont = cont.unwrap();
    let r = t
        .send(
            Method::GET,
            "lake",
            &format!("resource=filesystem&recursive=true&maxResults=4&continuation={cont}"),
        )
        .await;
    let v: Value = json(r).await;
    let names: Vec<_> = v["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a/b/3", "c"]);

    expect(
        t.send(
            Method::GET,
            "lake",
            "resource=filesystem&recursive=true&directory=zz",
        )
        .await,
        404,
        "PathNotFound",
    )
    .await;
    expect(
        t.send(Method::GET, "lake", "resource=filesystem").await,
        400,
        "MissingRequiredQueryParameter",
    )
    .await;

    let r = t.send(Method::GET, "", "resource=account").await;
    let v: Value = json(r).await;
    assert_eq!(v["filesystems"][0]["name"], "lake");
}

#[tokio::test]
async fn filesystems_and_properties() {
    let t = T::new().await;
    expect(
        t.send(Method::PUT, "Bad_Name", "resource=filesystem").await,
        400,
        "InvalidResourceName",
    )
    .await;
    let r = t
        .req(Method::PUT, "second", "resource=filesystem")
        .header("x-ms-properties", "k=dg==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["x-ms-namespace-enabled"], "true");
    let r = t.send(Method::HEAD, "second", "resource=filesystem").await;
    assert_eq!(r.headers()["x-ms-properties"], "k=dg==");
    assert_eq!(
        t.send(Method::DELETE, "second", "resource=filesystem")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    expect(
        t.send(Method::DELETE, "second", "resource=filesystem")
            .await,
        404,
        "FilesystemNotFound",
    )
    .await;

    t.server.put_file("lake", "p.json", &b"{}"[..]);
    let r = t
        .req(Method::PATCH, "lake/p.json", "action=setProperties")
        .header("x-ms-properties", "a=Yg==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = t.send(Method::HEAD, "lake/p.json", "").await;
    assert_eq!(r.headers()["x-ms-properties"], "a=Yg==");
}

#[tokio::test]
async fn unsupported_requests_say_so() {
    let t = T::new().await;
    t.server.put_file("lake", "p.json", &b"{}"[..]);
    expect(
        t.send(Method::POST, "lake/p.json", "").await,
        405,
        "UnsupportedHttpVerb",
    )
    .await;
    expect(
        t.send(Method::PATCH, "lake/p.json", "action=setAccessControl")
            .await,
        501,
        "NotImplementedByDfsTestServer",
    )
    .await;
    expect(
        t.send(Method::PATCH, "lake/p.json", "action=bogus").await,
        400,
        "InvalidQueryParameterValue",
    )
    .await;
    expect(
        t.send(Method::PUT, "lake/q.json", "").await,
        400,
        "MissingRequiredQueryParameter",
    )
    .await;
    expect(
        t.send(Method::GET, "lake", "").await,
        400,
        "MissingRequiredQueryParameter",
    )
    .await;
    let r = t
        .http
        .get(format!(
            "http://{}/otheraccount/lake/p.json?{}",
            t.server.addr(),
            t.sas
        ))
        .send()
        .await
        .unwrap();
    expect(r, 400, "InvalidUri").await;
}

#[tokio::test]
async fn auth_choices() {
    // SAS only: Shared Key is refused as the service refuses it when key access is off.
    let server = DfsServer::builder()
        .auth(Auth::Sas)
        .filesystem("lake")
        .start()
        .await
        .unwrap();
    let dl = common::client(&server, common::key_credentials());
    let e = dl
        .file_system_client("lake")
        .get_properties()
        .await
        .unwrap_err();
    assert_eq!(
        common::code(&e),
        (403, "KeyBasedAuthenticationNotPermitted".into())
    );

    // Anything goes.
    let server = DfsServer::builder()
        .auth(Auth::Any)
        .filesystem("lake")
        .start()
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .put(format!("{}lake/free.json?resource=file", server.endpoint()))
        .header("authorization", "SharedKey devstoreaccount1:bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Anonymous allowed next to Shared Key: a bad signature is still refused.
    let server = DfsServer::builder()
        .auth(Auth::SharedKey)
        .auth(Auth::Anonymous)
        .filesystem("lake")
        .start()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}lake/anon.json?resource=file", server.endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http
        .put(format!("{}lake/anon.json?resource=file", server.endpoint()))
        .header("authorization", "SharedKey devstoreaccount1:bogus")
        .header(
            "x-ms-date",
            httpdate::fmt_http_date(std::time::SystemTime::now()),
        )
        .send()
        .await
        .unwrap();
    expect(r, 403, "AuthenticationFailed").await;
    let r = http
        .put(format!("{}lake/anon.json?resource=file", server.endpoint()))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    expect(r, 400, "InvalidAuthenticationInfo").await;
}

/// The Blob endpoint: Put Blob writes a whole file once (`If-None-Match: *`), Get Blob
/// Properties answers its length, and the DFS endpoint sees the same file.
#[tokio::test]
async fn the_blob_endpoint_puts_and_describes_blobs_in_the_same_namespace() {
    let t = T::new().await;
    let blob = |path: &str| format!("{}{path}?{}", t.server.blob_endpoint(), t.sas);
    let put = |path: &str, body: &'static str| {
        t.http
            .put(blob(path))
            .header("x-ms-blob-type", "BlockBlob")
            .header("if-none-match", "*")
            .body(body)
    };
    let r = put("lake/a/b/c.json", "{\"a\":1}").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // The parent folders exist, as on a hierarchical-namespace account.
    assert_eq!(t.server.kind("lake", "a/b"), Some(PathKind::Directory));
    expect(
        put("lake/a/b/c.json", "{\"other\":2}")
            .send()
            .await
            .unwrap(),
        409,
        "BlobAlreadyExists",
    )
    .await;
    assert_eq!(
        t.server.read_string("lake", "a/b/c.json").as_deref(),
        Some("{\"a\":1}")
    );
    let r = t.send(Method::GET, "lake/a/b/c.json", "").await;
    assert_eq!(r.text().await.unwrap(), "{\"a\":1}", "read through DFS");

    let r = t.http.head(blob("lake/a/b/c.json")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "7");
    assert_eq!(r.headers()["x-ms-blob-type"], "BlockBlob");
    expect(
        t.http.head(blob("lake/a/none.json")).send().await.unwrap(),
        404,
        "BlobNotFound",
    )
    .await;
    expect(
        put("nolake/x.json", "{}").send().await.unwrap(),
        404,
        "ContainerNotFound",
    )
    .await;
    // Only those two operations: a DFS request on the Blob endpoint is refused.
    let r = t
        .http
        .put(format!("{}&resource=file", blob("lake/d.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 501);
    let stats = t.server.stats();
    assert_eq!(stats.op(dfs_test_server::OpKind::PutBlob), 3);
    assert_eq!(stats.op(dfs_test_server::OpKind::GetBlobProperties), 2);

    // A SAS without write permission is refused on the Blob endpoint too.
    let read_only = t.server.account_sas("rl");
    let r = t
        .http
        .put(format!(
            "{}lake/e.json?{read_only}",
            t.server.blob_endpoint()
        ))
        .header("x-ms-blob-type", "BlockBlob")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}
