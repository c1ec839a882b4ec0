//! Routing a request, authorizing it, applying faults, and carrying out the operation.

use crate::auth::{self, Principal, RequestView, Sas, RENAME_SOURCE_PERMISSIONS};
use crate::error::ApiError;
use crate::faults::FaultAction;
use crate::store::{
    etag_header, etag_str, hierarchical_cmp, normalize_path, Ancestors, Filesystem, Node, PathKind,
    Store,
};
use crate::util::{filetime, http_date, iso8601_ticks, parse_http_date, percent_decode_path};
use crate::{OpKind, Service, Shared, DEFAULT_VERSION};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderMap;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

pub(crate) type Resp = Response<Full<Bytes>>;

const SERVER: &str = "Windows-Azure-HDFS/1.0 Microsoft-HTTPAPI/2.0";
const JSON: &str = "application/json;charset=utf-8";
const OWNER: &str = "$superuser";
const FILE_PERMISSIONS: &str = "rw-r-----";
const DIR_PERMISSIONS: &str = "rwxr-x---";
/// Listing pages hold at most this many paths, as the service's do.
const MAX_RESULTS: usize = 5000;

/// Closes the request's connection without an answer: the future never completes, the
/// connection task sees the notification and drops the socket.
pub(crate) async fn die(kill: &Notify) -> Resp {
    kill.notify_one();
    std::future::pending().await
}

pub(crate) struct Ctx {
    request_id: String,
    version: String,
    client_request_id: Option<String>,
    head: bool,
}

impl Ctx {
    fn new(shared: &Shared, parts: &Parts) -> Self {
        let h = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
        Ctx {
            request_id: shared.ids.next(),
            version: h("x-ms-version").unwrap_or(DEFAULT_VERSION).to_owned(),
            client_request_id: h("x-ms-client-request-id").map(str::to_owned),
            head: parts.method == Method::HEAD,
        }
    }

    fn builder(&self, status: u16) -> hyper::http::response::Builder {
        let mut b = Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header("server", SERVER)
            .header("x-ms-request-id", &self.request_id)
            .header("x-ms-version", &self.version)
            .header("date", http_date(SystemTime::now()));
        if let Some(c) = &self.client_request_id {
            b = b.header("x-ms-client-request-id", c);
        }
        b
    }

    pub(crate) fn empty(&self, status: u16, headers: Vec<(&'static str, String)>) -> Resp {
        let mut b = self.builder(status);
        let mut has_len = false;
        for (n, v) in headers {
            has_len |= n == "content-length";
            b = b.header(n, v);
        }
        if !has_len {
            b = b.header("content-length", "0");
        }
        b.body(Full::new(Bytes::new())).expect("valid response")
    }

    fn with_body(
        &self,
        status: u16,
        headers: Vec<(&'static str, String)>,
        content_type: &str,
        body: Bytes,
    ) -> Resp {
        let mut b = self.builder(status).header("content-type", content_type);
        for (n, v) in headers {
            b = b.header(n, v);
        }
        b.header("content-length", body.len().to_string())
            .body(Full::new(body))
            .expect("valid response")
    }

    pub(crate) fn error(&self, e: ApiError) -> Resp {
        let mut b = self.builder(e.status).header("x-ms-error-code", &*e.code);
        for (n, v) in &e.headers {
            b = b.header(*n, v);
        }
        if self.head {
            return b
                .header("content-length", "0")
                .body(Full::new(Bytes::new()))
                .expect("valid response");
        }
        let mut message = format!(
            "{}\nRequestId:{}\nTime:{}",
            e.message,
            self.request_id,
            iso8601_ticks(SystemTime::now())
        );
        if let Some(d) = &e.detail {
            message.push('\n');
            message.push_str(d);
        }
        let body = json!({"error": {"code": e.code, "message": message}}).to_string();
        b.header("content-type", JSON)
            .header("content-length", body.len().to_string())
            .body(Full::new(Bytes::from(body)))
            .expect("valid response")
    }
}

#[derive(Debug)]
pub(crate) enum Target {
    Account,
    Filesystem(String),
    Path(String, String),
}

struct RenameSource {
    fs: String,
    path: String,
    sas: Option<Vec<(String, String)>>,
}

pub(crate) struct Req {
    method: Method,
    pub(crate) headers: HeaderMap,
    query: Vec<(String, String)>,
    pub(crate) body: Bytes,
    pub(crate) target: Target,
    op: OpKind,
    source: Option<RenameSource>,
    service: Service,
}

impl Req {
    fn q(&self, name: &str) -> Option<&str> {
        query_get(&self.query, name)
    }

    pub(crate) fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn bool_q(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.q(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid_query(name, v)),
        }
    }

    fn position(&self) -> Result<u64, ApiError> {
        let v = self
            .q("position")
            .ok_or_else(|| ApiError::missing_query("position"))?;
        v.parse()
            .map_err(|_| ApiError::invalid_query("position", v))
    }
}

fn query_get<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn route(raw_path: &str, account: &str) -> Result<Target, ApiError> {
    let rest = raw_path.strip_prefix('/').unwrap_or(raw_path);
    let (acct, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if acct != account {
        return Err(ApiError::invalid_uri(format!(
            "This server serves account '{account}' at path-style URLs: /{account}/<filesystem>/<path>."
        )));
    }
    let decoded = percent_decode_path(rest).ok_or_else(|| {
        ApiError::invalid_uri(
            "The path has a '%' not followed by two hex digits, or is not UTF-8 once decoded."
                .into(),
        )
    })?;
    let (fs, path) = decoded.split_once('/').unwrap_or((&decoded, ""));
    if fs.is_empty() {
        return if path.is_empty() {
            Ok(Target::Account)
        } else {
            Err(ApiError::invalid_uri("Empty filesystem name.".into()))
        };
    }
    let path = normalize_path(path).ok_or_else(|| {
        ApiError::invalid_uri("The path has an empty, '.' or '..' segment.".into())
    })?;
    Ok(if path.is_empty() {
        Target::Filesystem(fs.to_owned())
    } else {
        Target::Path(fs.to_owned(), path)
    })
}

fn classify(
    method: &Method,
    target: &Target,
    q: &[(String, String)],
    headers: &HeaderMap,
    service: Service,
) -> OpKind {
    if service == Service::Blob {
        return crate::blob::classify(method, target, headers);
    }
    let is =
        |name: &str, value: &str| query_get(q, name).is_some_and(|v| v.eq_ignore_ascii_case(value));
    match target {
        Target::Account if *method == Method::GET && is("resource", "account") => {
            OpKind::ListFilesystems
        }
        Target::Account => OpKind::Unsupported,
        Target::Filesystem(_) if is("resource", "filesystem") => match *method {
            Method::PUT => OpKind::CreateFilesystem,
            Method::HEAD => OpKind::GetFilesystemProperties,
            Method::PATCH => OpKind::SetFilesystemProperties,
            Method::DELETE => OpKind::DeleteFilesystem,
            Method::GET => OpKind::ListPaths,
            _ => OpKind::Unsupported,
        },
        Target::Filesystem(_) => OpKind::Unsupported,
        Target::Path(..) => match *method {
            Method::PUT if headers.contains_key("x-ms-rename-source") => OpKind::Rename,
            Method::PUT if is("resource", "file") => OpKind::CreateFile,
            Method::PUT if is("resource", "directory") => OpKind::CreateDirectory,
            Method::PATCH if is("action", "append") => OpKind::Append,
            Method::PATCH if is("action", "flush") => OpKind::Flush,
            Method::PATCH if is("action", "setProperties") => OpKind::SetProperties,
            Method::HEAD => OpKind::GetProperties,
            Method::GET => OpKind::Read,
            Method::DELETE => OpKind::Delete,
            _ => OpKind::Unsupported,
        },
    }
}

fn unsupported(r: &Req) -> ApiError {
    if ![
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ]
    .contains(&r.method)
    {
        return ApiError::new(
            405,
            "UnsupportedHttpVerb",
            "The resource doesn't support the specified HTTP verb.",
        );
    }
    match (&r.target, r.method.clone()) {
        (Target::Filesystem(_), _) => match r.q("resource") {
            None => ApiError::missing_query("resource"),
            Some(v) => ApiError::invalid_query("resource", v),
        },
        (Target::Path(..), Method::PUT) => match r.q("resource") {
            None => ApiError::missing_query("resource"),
            Some(v) => ApiError::invalid_query("resource", v),
        },
        (Target::Path(..), Method::PATCH) => match r.q("action") {
            None => ApiError::missing_query("action"),
            Some(v @ ("setAccessControl" | "setAccessControlRecursive")) => {
                ApiError::not_implemented(format!("action={v}"))
            }
            Some(v) => ApiError::invalid_query("action", v),
        },
        _ => ApiError::not_implemented(format!("{} on {:?}", r.method, r.target)),
    }
}

fn parse_rename_source(value: &[u8], account: &str) -> Result<RenameSource, ApiError> {
    if value.iter().any(|&b| !(0x21..=0x7e).contains(&b)) {
        return Err(ApiError::invalid_source_uri(
            "x-ms-rename-source holds a space or a character that is not ASCII; such characters must be percent-encoded.".into(),
        ));
    }
    let s = std::str::from_utf8(value).expect("checked ASCII");
    let (path_part, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    };
    // `%XX` is decoded; a `+` stays a `+`: the value is a URI path, not a form.
    let decoded = percent_decode_path(path_part).ok_or_else(|| {
        ApiError::invalid_source_uri(
            "x-ms-rename-source is not a valid percent-encoded path.".into(),
        )
    })?;
    let Some(rest) = decoded.strip_prefix('/') else {
        return Err(ApiError::invalid_source_uri(
            "x-ms-rename-source must be /{filesystem}/{path}.".into(),
        ));
    };
    let mut segs: Vec<&str> = rest.split('/').collect();
    // Path-style: a client that builds the source from its URL's path sends the account too.
    if segs.len() >= 3 && segs[0] == account {
        segs.remove(0);
    }
    let fs = segs[0].to_owned();
    let path = normalize_path(&segs[1..].join("/")).filter(|p| !fs.is_empty() && !p.is_empty());
    let Some(path) = path else {
        return Err(ApiError::invalid_source_uri(
            "x-ms-rename-source must be /{filesystem}/{path}.".into(),
        ));
    };
    let sas = query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        })
        .filter(|q| q.iter().any(|(k, _)| k == "sig"));
    Ok(RenameSource { fs, path, sas })
}

fn record(shared: &Shared, parts: &Parts, body_len: usize, op: OpKind) {
    if let Some(log) = &shared.log {
        let r = crate::RecordedRequest {
            method: parts.method.to_string(),
            uri: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body_len,
            op,
        };
        log.lock().unwrap().push(r);
    }
}

/// Handles one request whose body has been read.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    parts: Parts,
    body: Bytes,
    peer: SocketAddr,
    kill: Arc<Notify>,
    service: Service,
) -> Resp {
    let ctx = Ctx::new(&shared, &parts);
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let target = match route(parts.uri.path(), &shared.account.name) {
        Ok(t) => t,
        Err(e) => {
            shared.counters.op(OpKind::Unsupported);
            record(&shared, &parts, body.len(), OpKind::Unsupported);
            return ctx.error(e);
        }
    };
    let op = classify(&parts.method, &target, &query, &parts.headers, service);
    shared.counters.op(op);
    record(&shared, &parts, body.len(), op);

    let view = RequestView {
        method: parts.method.as_str(),
        headers: &parts.headers,
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query(),
        query: &query,
        peer: peer.ip(),
        op,
    };
    let principal = match auth::authenticate(&shared.auth, &shared.account, shared.max_skew, &view)
    {
        Ok(p) => p,
        Err(e) => return ctx.error(e),
    };

    let mut source = None;
    if op == OpKind::Rename {
        let raw = parts
            .headers
            .get("x-ms-rename-source")
            .expect("classified as rename");
        let s = match parse_rename_source(raw.as_bytes(), &shared.account.name) {
            Ok(s) => s,
            Err(e) => return ctx.error(e),
        };
        // With SAS, the service authorizes the source with a SAS of its own, appended to
        // x-ms-rename-source; the one on the request URL covers the destination only.
        match (&principal, &s.sas) {
            (_, Some(q)) if !shared.auth.any => {
                if let Err(e) = Sas::from_pairs(q).verify(
                    &shared.account,
                    peer.ip(),
                    'o',
                    RENAME_SOURCE_PERMISSIONS,
                ) {
                    return ctx.error(e);
                }
            }
            (Principal::Sas, None) => {
                return ctx.error(
                    ApiError::new(
                        403,
                        "AuthorizationPermissionMismatch",
                        "This request is not authorized to perform this operation using this permission.",
                    )
                    .detail("The rename source carries no SAS: append '?<sas>' to x-ms-rename-source.".into()),
                )
            }
            _ => {}
        }
        source = Some(s);
    }

    let req = Req {
        method: parts.method,
        headers: parts.headers,
        query,
        body,
        target,
        op,
        source,
        service,
    };

    let fault = {
        let mut paths: Vec<String> = Vec::with_capacity(2);
        match &req.target {
            Target::Account => paths.push(String::new()),
            Target::Filesystem(fs) => paths.push(fs.clone()),
            Target::Path(fs, p) => paths.push(format!("{fs}/{p}")),
        }
        if let Some(s) = &req.source {
            paths.push(format!("{}/{}", s.fs, s.path));
        }
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        shared.faults.take(op, &refs)
    };
    if fault.is_some() {
        shared.counters.faults_fired.fetch_add(1, Ordering::Relaxed);
    }
    match fault {
        None => execute(&shared, &ctx, &req),
        Some(FaultAction::Respond {
            status,
            code,
            message,
        }) => ctx.error(ApiError::new(status, code, message)),
        Some(FaultAction::Drop) => die(&kill).await,
        Some(FaultAction::ApplyThenDrop) => {
            let _ = execute(&shared, &ctx, &req);
            die(&kill).await
        }
        Some(FaultAction::Delay(d)) => {
            // In a task of its own, so the operation happens after the delay even if the
            // client gives up meanwhile (as a slow service would still carry it out).
            let late = shared.clone();
            let task = tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if late.crashed.load(Ordering::SeqCst) {
                    return None;
                }
                Some(execute(&late, &ctx, &req))
            });
            match task.await {
                Ok(Some(r)) => r,
                _ => die(&kill).await,
            }
        }
        Some(FaultAction::ApplyThenDelay(d)) => {
            let r = execute(&shared, &ctx, &req);
            tokio::time::sleep(d).await;
            r
        }
        Some(FaultAction::Crash) => {
            let _ = execute(&shared, &ctx, &req);
            shared.crash();
            die(&kill).await
        }
    }
}

fn execute(shared: &Shared, ctx: &Ctx, r: &Req) -> Resp {
    let now = SystemTime::now();
    let mut store = shared.store.lock().unwrap();
    let result = match r.op {
        OpKind::ListFilesystems => list_filesystems(&store, ctx, r),
        OpKind::CreateFilesystem => create_filesystem(&mut store, ctx, r, now),
        OpKind::GetFilesystemProperties => filesystem_properties(&store, ctx, r),
        OpKind::SetFilesystemProperties => set_filesystem_properties(&mut store, ctx, r, now),
        OpKind::DeleteFilesystem => delete_filesystem(&mut store, ctx, r),
        OpKind::ListPaths => list_paths(&store, ctx, r),
        OpKind::CreateFile => create_path(&mut store, ctx, r, PathKind::File, now),
        OpKind::CreateDirectory => create_path(&mut store, ctx, r, PathKind::Directory, now),
        OpKind::Append => append(&mut store, ctx, r, now),
        OpKind::Flush => flush(&mut store, ctx, r, now),
        OpKind::Rename => rename(&mut store, ctx, r, now),
        OpKind::SetProperties => set_properties(&mut store, ctx, r, now),
        OpKind::GetProperties => get_properties(&store, ctx, r),
        OpKind::Read => read(&store, ctx, r),
        OpKind::Delete => delete(&mut store, ctx, r),
        OpKind::PutBlob => crate::blob::put(&mut store, ctx, r, now),
        OpKind::GetBlobProperties => crate::blob::properties(&store, ctx, r),
        OpKind::Unsupported if r.service == Service::Blob => Err(crate::blob::unsupported(r)),
        OpKind::Unsupported => Err(unsupported(r)),
    };
    result.unwrap_or_else(|e| ctx.error(e))
}

// ---- conditions -------------------------------------------------------------------------

pub(crate) struct Conditions {
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
}

pub(crate) enum CondFail {
    /// `If-None-Match: *` on an existing path.
    Exists,
    NotMet,
    NotModified,
}

impl Conditions {
    pub(crate) fn from(h: &HeaderMap, prefix: &str) -> Self {
        let get = |n: &str| {
            h.get(format!("{prefix}{n}").as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Conditions {
            if_match: get("if-match"),
            if_none_match: get("if-none-match"),
            if_modified_since: get("if-modified-since").and_then(|s| parse_http_date(&s)),
            if_unmodified_since: get("if-unmodified-since").and_then(|s| parse_http_date(&s)),
        }
    }

    /// `node` is the current (etag, last modified), if the path exists.
    pub(crate) fn check(
        &self,
        node: Option<(u64, SystemTime)>,
        read: bool,
    ) -> Result<(), CondFail> {
        let secs = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        let matches = |list: &str, etag: u64| {
            let e = etag_str(etag);
            list.split(',').any(|t| {
                let t = t.trim();
                let t = t.strip_prefix("W/").unwrap_or(t);
                t == "*" || t.trim_matches('"') == e
            })
        };
        if let Some(m) = &self.if_match {
            match node {
                Some((e, _)) if matches(m, e) => {}
                _ => return Err(CondFail::NotMet),
            }
        }
        if let (Some(t), Some((_, modified))) = (self.if_unmodified_since, node) {
            if secs(modified) > secs(t) {
                return Err(CondFail::NotMet);
            }
        }
        if let (Some(m), Some((e, _))) = (&self.if_none_match, node) {
            if m.trim() == "*" {
                return Err(if read {
                    CondFail::NotModified
                } else {
                    CondFail::Exists
                });
            }
            if matches(m, e) {
                return Err(if read {
                    CondFail::NotModified
                } else {
                    CondFail::NotMet
                });
            }
        }
        if let (Some(t), Some((_, modified))) = (self.if_modified_since, node) {
            if secs(modified) <= secs(t) {
                return Err(if read {
                    CondFail::NotModified
                } else {
                    CondFail::NotMet
                });
            }
        }
        Ok(())
    }
}

/// Destination conditions of a create or rename: `If-None-Match: *` on an existing path is
/// 409 `PathAlreadyExists`, any other failure 412 `ConditionNotMet`.
fn check_write(r: &Req, node: Option<&Node>) -> Result<(), ApiError> {
    Conditions::from(&r.headers, "")
        .check(node.map(|n| (n.etag, n.modified)), false)
        .map_err(|f| match f {
            CondFail::Exists => ApiError::path_already_exists(),
            _ => ApiError::condition_not_met(),
        })
}

/// Conditions of an update or delete: every failure is 412 `ConditionNotMet`.
fn check_update(r: &Req, node: Option<(u64, SystemTime)>) -> Result<(), ApiError> {
    Conditions::from(&r.headers, "")
        .check(node, false)
        .map_err(|_| ApiError::condition_not_met())
}

// ---- filesystems ------------------------------------------------------------------------

pub(crate) fn fs_name(r: &Req) -> &str {
    match &r.target {
        Target::Filesystem(fs) | Target::Path(fs, _) => fs,
        Target::Account => "",
    }
}

pub(crate) fn path_name(r: &Req) -> &str {
    match &r.target {
        Target::Path(_, p) => p,
        _ => "",
    }
}

fn valid_filesystem_name(n: &str) -> bool {
    let b = n.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !n.contains("--")
}

fn list_filesystems(store: &Store, ctx: &Ctx, r: &Req) -> Result<Resp, ApiError> {
    let prefix = r.q("prefix").unwrap_or("");
    let max = max_results(r)?;
    let start = continuation(r)?;
    let mut names = store
        .filesystems
        .iter()
        .filter(|(n, _)| n.starts_with(prefix) && start.as_deref().is_none_or(|s| n.as_str() >= s));
    let list: Vec<Value> = names
        .by_ref()
        .take(max)
        .map(|(n, f)| json!({"etag": etag_header(f.etag), "lastModified": http_date(f.modified), "name": n}))
        .collect();
    let mut headers = Vec::new();
    if let Some((next, _)) = names.next() {
        headers.push(("x-ms-continuation", hex(next)));
    }
    let body = json!({ "filesystems": list }).to_string();
    Ok(ctx.with_body(200, headers, JSON, Bytes::from(body)))
}

fn create_filesystem(
    store: &mut Store,
    ctx: &Ctx,
    r: &Req,
    now: SystemTime,
) -> Result<Resp, ApiError> {
    let name = fs_name(r);
    if !valid_filesystem_name(name) {
        return Err(ApiError::new(
            400,
            "InvalidResourceName",
            "The specified resource name contains invalid characters.",
        ));
    }
    if store.filesystems.contains_key(name) {
        return Err(ApiError::new(
            409,
            "FilesystemAlreadyExists",
            "The specified filesystem already exists.",
        ));
    }
    let etag = store.etag();
    let mut f = Filesystem::new(etag, now);
    f.properties = r.h("x-ms-properties").unwrap_or("").to_owned();
    store.filesystems.insert(name.to_owned(), f);
    Ok(ctx.empty(
        201,
        vec![
            ("etag", etag_header(etag)),
            ("last-modified", http_date(now)),
            ("x-ms-namespace-enabled", "true".into()),
        ],
    ))
}

fn filesystem_properties(store: &Store, ctx: &Ctx, r: &Req) -> Result<Resp, ApiError> {
    let f = store
        .filesystems
        .get(fs_name(r))
        .ok_or_else(ApiError::filesystem_not_found)?;
    Ok(ctx.empty(
        200,
        vec![
            ("etag", etag_header(f.etag)),
            ("last-modified", http_date(f.modified)),
            ("x-ms-namespace-enabled", "true".into()),
            ("x-ms-properties", f.properties.clone()),
        ],
    ))
}

fn set_filesystem_properties(
    store: &mut Store,
    ctx: &Ctx,
    r: &Req,
    now: SystemTime,
) -> Result<Resp, ApiError> {
    let etag = store.etag();
    let f = store
        .filesystems
        .get_mut(fs_name(r))
        .ok_or_else(ApiError::filesystem_not_found)?;
    check_update(r, Some((f.etag, f.modified)))?;
    f.properties = r.h("x-ms-properties").unwrap_or("").to_owned();
    f.etag = etag;
    f.modified = now;
    Ok(ctx.empty(
        200,
        vec![
            ("etag", etag_header(etag)),
            ("last-modified", http_date(now)),
        ],
    ))
}

fn delete_filesystem(store: &mut Store, ctx: &Ctx, r: &Req) -> Result<Resp, ApiError> {
    let f = store
        .filesystems
        .get(fs_name(r))
        .ok_or_else(ApiError::filesystem_not_found)?;
    check_update(r, Some((f.etag, f.modified)))?;
    store.filesystems.remove(fs_name(r));
    Ok(ctx.empty(202, vec![]))
}

fn max_results(r: &Req) -> Result<usize, ApiError> {
    match r.q("maxResults") {
        None => Ok(MAX_RESULTS),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.min(MAX_RESULTS)),
            _ => Err(ApiError::invalid_query("maxResults", v)),
        },
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if s.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// The continuation token is the hex of the next name to return.
fn continuation(r: &Req) -> Result<Option<String>, ApiError> {
    match r.q("continuation") {
        None | Some("") => Ok(None),
        Some(c) => unhex(c)
            .map(Some)
            .ok_or_else(|| ApiError::invalid_query("continuation", c)),
    }
}

fn list_paths(store: &Store, ctx: &Ctx, r: &Req) -> Result<Resp, ApiError> {
    let f = store
        .filesystems
        .get(fs_name(r))
        .ok_or_else(ApiError::filesystem_not_found)?;
    let recursive = r
        .bool_q("recursive")?
        .ok_or_else(|| ApiError::missing_query("recursive"))?;
    let dir = match r.q("directory") {
        None => String::new(),
        Some(d) => normalize_path(d).ok_or_else(|| ApiError::invalid_query("directory", d))?,
    };
    if !dir.is_empty() {
        match f.paths.get(&dir) {
            Some(n) if n.kind == PathKind::Directory => {}
            _ => return Err(ApiError::path_not_found()),
        }
    }
    let max = max_results(r)?;
    let start = continuation(r)?;
    let depth = if dir.is_empty() {
        0
    } else {
        dir.split('/').count()
    };
    let mut keys: Vec<&String> = f
        .descendant_keys(&dir)
        .iter()
        .filter_map(|k| f.paths.get_key_value(k).map(|(k, _)| k))
        .filter(|k| recursive || k.split('/').count() == depth + 1)
        .collect();
    keys.sort_by(|a, b| hierarchical_cmp(a, b));
    let from = match &start {
        None => 0,
        Some(s) => keys.partition_point(|k| hierarchical_cmp(k, s).is_lt()),
    };
    let page = &keys[from..keys.len().min(from + max)];
    let paths: Vec<Value> = page
        .iter()
        .map(|k| {
            let n = &f.paths[k.as_str()];
            let mut m = Map::new();
            m.insert("contentLength".into(), n.data.len().to_string().into());
            m.insert(
                "creationTime".into(),
                filetime(n.created).to_string().into(),
            );
            m.insert("etag".into(), etag_str(n.etag).into());
            m.insert("group".into(), OWNER.into());
            if n.kind == PathKind::Directory {
                m.insert("isDirectory".into(), "true".into());
            }
            m.insert("lastModified".into(), http_date(n.modified).into());
            m.insert("name".into(), k.as_str().into());
            m.insert("owner".into(), OWNER.into());
            m.insert(
                "permissions".into(),
                match n.kind {
                    PathKind::File => FILE_PERMISSIONS,
                    PathKind::Directory => DIR_PERMISSIONS,
                }
                .into(),
            );
            Value::Object(m)
        })
        .collect();
    let mut headers = Vec::new();
    if let Some(next) = keys.get(from + max) {
        headers.push(("x-ms-continuation", hex(next)));
    }
    let body = json!({ "paths": paths }).to_string();
    Ok(ctx.with_body(200, headers, JSON, Bytes::from(body)))
}

// ---- paths ------------------------------------------------------------------------------

fn node_headers(n: &Node, with_length: bool) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("etag", etag_header(n.etag)),
        ("last-modified", http_date(n.modified)),
        ("x-ms-resource-type", n.kind.as_str().into()),
        ("x-ms-creation-time", http_date(n.created)),
        ("accept-ranges", "bytes".into()),
        ("x-ms-server-encrypted", "true".into()),
        ("x-ms-lease-state", "available".into()),
        ("x-ms-lease-status", "unlocked".into()),
    ];
    if with_length {
        h.push(("content-length", n.data.len().to_string()));
    }
    if !n.properties.is_empty() {
        h.push(("x-ms-properties", n.properties.clone()));
    }
    h
}

pub(crate) fn content_type(n: &Node) -> &str {
    match (&n.content_type, n.kind) {
        (Some(t), _) => t,
        (None, PathKind::File) => "application/octet-stream",
        (None, PathKind::Directory) => "application/octet-stream",
    }
}

fn create_path(
    store: &mut Store,
    ctx: &Ctx,
    r: &Req,
    kind: PathKind,
    now: SystemTime,
) -> Result<Resp, ApiError> {
    if !r.body.is_empty() {
        return Err(ApiError::content_length_must_be_zero());
    }
    let etag = store.etag();
    let path = path_name(r);
    let f = store
        .filesystems
        .get_mut(fs_name(r))
        .ok_or_else(ApiError::filesystem_not_found)?;
    let existing = f.paths.get(path);
    check_write(r, existing)?;
    if existing.is_some_and(|n| n.kind != kind) {
        return Err(ApiError::path_conflict());
    }
    make_ancestors(f, path, etag, now)?;
    let n = f
        .paths
        .entry(path.to_owned())
        .or_insert_with(|| Node::new(kind, etag, now));
    if kind == PathKind::File {
        // Creating over a file replaces it.
        n.data = Bytes::new();
        n.staged.clear();
        n.created = now;
        n.properties.clear();
        n.content_type = None;
    }
    set_properties_from(n, r, etag, now);
    Ok(ctx.empty(
        201,
        vec![
            ("etag", etag_header(etag)),
            ("last-modified", http_date(now)),
            ("x-ms-request-server-encrypted", "true".into()),
        ],
    ))
}

/// Makes the missing folders above `path`, as a create does; a file among them is 409
/// `PathConflict`.
pub(crate) fn make_ancestors(
    f: &mut Filesystem,
    path: &str,
    etag: u64,
    now: SystemTime,
) -> Result<(), ApiError> {
    match f.ancestors(path) {
        Ancestors::Present => Ok(()),
        Ancestors::File(_) => Err(ApiError::path_conflict()),
        Ancestors::Missing(missing) => {
            for p in missing {
                f.paths.insert(p, Node::new(PathKind::Directory, etag, now));
            }
            Ok(())
        }
    }
}

fn file_mut<'a>(store: &'a mut Store, r: &Req) -> Result<&'a mut Node, ApiError> {
    let f = store
        .filesystems
        .get_mut(fs_name(r))
        .ok_or_else(ApiError::filesystem_not_found)?;
    f.paths
        .get_mut(path_name(r))
        .ok_or_else(ApiError::path_not_found)
}

fn append(store: &mut Store, ctx: &Ctx, r: &Req, now: SystemTime) -> Result<Resp, ApiError> {
    let etag = store.etag();
    let n = file_mut(store, r)?;
    if n.kind != PathKind::File {
        return Err(ApiError::resource_type_mismatch());
    }
    let position = r.position()?;
    let flush = r.bool_q("flush")?.unwrap_or(false);
    check_update(r, Some((n.etag, n.modified)))?;
    if r.body.is_empty() {
        return Err(ApiError::new(
            400,
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format.",
        )
        .detail("HeaderName: Content-Length\nHeaderValue: 0".into()));
    }
    if position < n.data.len() as u64 {
        return Err(ApiError::invalid_flush_position());
    }
    n.staged.insert(position, r.body.clone());
    let mut headers = vec![("x-ms-request-server-encrypted", "true".to_owned())];
    if flush {
        n.flush(position + r.body.len() as u64, false)
            .map_err(|_| ApiError::invalid_flush_position())?;
        n.etag = etag;
        n.modified = now;
        headers.push(("etag", etag_header(etag)));
        headers.push(("last-modified", http_date(now)));
    }
    Ok(ctx.empty(202, headers))
}

fn flush(store: &mut Store, ctx: &Ctx, r: &Req, now: SystemTime) -> Result<Resp, ApiError> {
    let etag = store.etag();
    let n = file_mut(store, r)?;
    if n.kind != PathKind::File {
        return Err(ApiError::resource_type_mismatch());
    }
    if !r.body.is_empty() {
        return Err(ApiError::content_length_must_be_zero());
    }
    let position = r.position()?;
    let retain = r.bool_q("retainUncommittedData")?.unwrap_or(false);
    r.bool_q("close")?;
    check_update(r, Some((n.etag, n.modified)))?;
    n.flush(position, retain)
        .map_err(|_| ApiError::invalid_flush_position())?;
    if let Some(t) = r.h("x-ms-content-type") {
        n.content_type = Some(t.to_owned());
    }
    n.etag = etag;
    n.modified = now;
    Ok(ctx.empty(
        200,
        vec![
            ("etag", etag_header(etag)),
            ("last-modified", http_date(now)),
            ("x-ms-request-server-encrypted", "true".into()),
        ],
    ))
}

fn set_properties(
    store: &mut Store,
    ctx: &Ctx,
    r: &Req,
    now: SystemTime,
) -> Result<Resp, ApiError> {
    let etag = store.etag();
    let n = file_mut(store, r)?;
    check_update(r, Some((n.etag, n.modified)))?;
    set_properties_from(n, r, etag, now);
    Ok(ctx.empty(
        200,
        vec![
            ("etag", etag_header(etag)),
            ("last-modified", http_date(now)),
        ],
    ))
}

fn rename(store: &mut Store, ctx: &Ctx, r: &Req, now: SystemTime) -> Result<Resp, ApiError> {
    let src = r.source.as_ref().expect("rename has a source");
    let (dfs, dpath) = (fs_name(r), path_name(r));
    if let Some(m) = r.q("mode") {
        if !m.eq_ignore_ascii_case("legacy") && !m.eq_ignore_ascii_case("posix") {
            return Err(ApiError::invalid_query("mode", m));
        }
    }
    if !r.body.is_empty() {
        return Err(ApiError::content_length_must_be_zero());
    }
    if !store.filesystems.contains_key(dfs) {
        return Err(ApiError::filesystem_not_found());
    }
    let source_not_found = || {
        ApiError::new(
            404,
            "SourcePathNotFound",
            "The source path for a rename operation does not exist.",
        )
    };
    let sf = store
        .filesystems
        .get(&src.fs)
        .ok_or_else(source_not_found)?;
    let sn = sf.paths.get(&src.path).ok_or_else(source_not_found)?;
    Conditions::from(&r.headers, "x-ms-source-")
        .check(Some((sn.etag, sn.modified)), false)
        .map_err(|_| ApiError::source_condition_not_met())?;
    let kind = sn.kind;
    let same_fs = src.fs == dfs;
    if same_fs
        && kind == PathKind::Directory
        && (dpath == src.path || dpath.starts_with(&format!("{}/", src.path)))
    {
        return Err(ApiError::new(
            409,
            "InvalidRenameSourcePath",
            "The source directory cannot be the same as the destination directory, nor can the destination be a subdirectory of the source directory.",
        ));
    }
    let df = &store.filesystems[dfs];
    let existing = df.paths.get(dpath);
    check_write(r, existing)?;
    match df.ancestors(dpath) {
        Ancestors::Present => {}
        Ancestors::File(_) => return Err(ApiError::path_conflict()),
        Ancestors::Missing(_) => {
            return Err(ApiError::new(
                404,
                "RenameDestinationParentPathNotFound",
                "The parent directory of the destination path does not exist.",
            ))
        }
    }
    if same_fs && dpath == src.path {
        // Renaming a file onto itself changes nothing.
        let n = &df.paths[dpath];
        return Ok(ctx.empty(
            201,
            vec![
                ("etag", etag_header(n.etag)),
                ("last-modified", http_date(n.modified)),
            ],
        ));
    }
    if let Some(e) = existing {
        if e.kind != kind {
            return Err(ApiError::new(
                409,
                "InvalidSourceOrDestinationResourceType",
                "The source and destination resource type must be identical.",
            ));
        }
        if e.kind == PathKind::Directory {
            return Err(ApiError::path_already_exists().detail(
                "dfs-test-server does not rename a directory onto an existing directory.".into(),
            ));
        }
    }
    // Move the source and everything under it.
    let sf = store.filesystems.get_mut(&src.fs).expect("checked");
    let mut moved = Vec::new();
    for k in sf.descendant_keys(&src.path) {
        let n = sf.paths.remove(&k).expect("listed");
        moved.push((format!("{dpath}{}", &k[src.path.len()..]), n));
    }
    let mut root = sf.paths.remove(&src.path).expect("checked");
    if let Some(p) = r.h("x-ms-properties") {
        root.properties = p.to_owned();
    }
    let (etag, modified) = (root.etag, root.modified);
    let df = store.filesystems.get_mut(dfs).expect("checked");
    df.paths.insert(dpath.to_owned(), root);
    for (k, n) in moved {
        df.paths.insert(k, n);
    }
    let _ = now;
    Ok(ctx.empty(
        201,
        vec![
            ("etag", etag_header(etag)),
            ("last-modified", http_date(modified)),
        ],
    ))
}

fn find<'a>(store: &'a Store, r: &Req) -> Result<&'a Node, ApiError> {
    let f = store
        .filesystems
        .get(fs_name(r))
        .ok_or_else(ApiError::filesystem_not_found)?;
    f.paths
        .get(path_name(r))
        .ok_or_else(ApiError::path_not_found)
}

/// Read conditions: `Ok(Some(resp))` is a 304 to send.
pub(crate) fn check_read(ctx: &Ctx, r: &Req, n: &Node) -> Result<Option<Resp>, ApiError> {
    match Conditions::from(&r.headers, "").check(Some((n.etag, n.modified)), true) {
        Ok(()) => Ok(None),
        Err(CondFail::NotModified) => Ok(Some(ctx.empty(
            304,
            vec![
                ("etag", etag_header(n.etag)),
                ("last-modified", http_date(n.modified)),
            ],
        ))),
        Err(_) => Err(ApiError::condition_not_met()),
    }
}

fn get_properties(store: &Store, ctx: &Ctx, r: &Req) -> Result<Resp, ApiError> {
    let n = find(store, r)?;
    if let Some(resp) = check_read(ctx, r, n)? {
        return Ok(resp);
    }
    let mut h = node_headers(n, true);
    h.push(("content-type", content_type(n).to_owned()));
    h.push(("x-ms-owner", OWNER.into()));
    h.push(("x-ms-group", OWNER.into()));
    h.push((
        "x-ms-permissions",
        match n.kind {
            PathKind::File => FILE_PERMISSIONS,
            PathKind::Directory => DIR_PERMISSIONS,
        }
        .into(),
    ));
    if r.q("action")
        .is_some_and(|a| a.eq_ignore_ascii_case("getAccessControl"))
    {
        h.push(("x-ms-acl", "user::rw-,group::r--,other::---".into()));
    }
    Ok(ctx.empty(200, h))
}

/// `bytes=a-b` or `bytes=a-`; `None` when absent or not of that form (then ignored).
fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => None,
        b => Some(b.parse().ok()?),
    };
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some((start, end))
}

fn read(store: &Store, ctx: &Ctx, r: &Req) -> Result<Resp, ApiError> {
    let n = find(store, r)?;
    if let Some(resp) = check_read(ctx, r, n)? {
        return Ok(resp);
    }
    let len = n.data.len() as u64;
    let range = r
        .h("x-ms-range")
        .or_else(|| r.h("range"))
        .and_then(parse_range);
    let mut h = node_headers(n, false);
    let Some((start, end)) = range else {
        return Ok(ctx.with_body(200, h, content_type(n), n.data.clone()));
    };
    if start >= len {
        return Err(ApiError::new(
            416,
            "InvalidRange",
            "The range specified is invalid for the current size of the resource.",
        )
        .header("content-range", format!("bytes */{len}")));
    }
    let end = end.map_or(len - 1, |e| e.min(len - 1));
    h.push(("content-range", format!("bytes {start}-{end}/{len}")));
    let body = n.data.slice(start as usize..=end as usize);
    Ok(ctx.with_body(206, h, content_type(n), body))
}

fn delete(store: &mut Store, ctx: &Ctx, r: &Req) -> Result<Resp, ApiError> {
    let recursive = r.bool_q("recursive")?.unwrap_or(false);
    let n = find(store, r)?;
    check_update(r, Some((n.etag, n.modified)))?;
    let f = store.filesystems.get_mut(fs_name(r)).expect("found");
    let path = path_name(r);
    if n_kind(f, path) == PathKind::Directory {
        if f.has_children(path) && !recursive {
            return Err(ApiError::new(
                409,
                "DirectoryNotEmpty",
                "The recursive query parameter value must be true to delete a non-empty directory.",
            ));
        }
        for k in f.descendant_keys(path) {
            f.paths.remove(&k);
        }
    }
    f.paths.remove(path);
    Ok(ctx.empty(200, vec![]))
}

fn n_kind(f: &Filesystem, path: &str) -> PathKind {
    f.paths[path].kind
}

/// Applies the request's `x-ms-properties` and `x-ms-content-type` to a path and marks it
/// changed (new ETag and time), as create and set-properties both do.
fn set_properties_from(n: &mut Node, r: &Req, etag: u64, now: SystemTime) {
    if let Some(p) = r.h("x-ms-properties") {
        n.properties = p.to_owned();
    }
    if let Some(t) = r.h("x-ms-content-type") {
        n.content_type = Some(t.to_owned());
    }
    n.etag = etag;
    n.modified = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing() {
        let t = route("/acct/fs/a%20b/c+d%C3%A9", "acct").unwrap();
        assert!(matches!(t, Target::Path(fs, p) if fs == "fs" && p == "a b/c+dé"));
        assert!(matches!(route("/acct/fs", "acct").unwrap(), Target::Filesystem(f) if f == "fs"));
        assert!(matches!(route("/acct/fs/", "acct").unwrap(), Target::Filesystem(f) if f == "fs"));
        assert!(matches!(route("/acct/", "acct").unwrap(), Target::Account));
        assert!(matches!(route("/acct", "acct").unwrap(), Target::Account));
        assert_eq!(route("/other/fs", "acct").unwrap_err().code, "InvalidUri");
        assert_eq!(
            route("/acct/fs/a%zz", "acct").unwrap_err().code,
            "InvalidUri"
        );
        assert_eq!(
            route("/acct/fs/a//b", "acct").unwrap_err().code,
            "InvalidUri"
        );
    }

    #[test]
    fn rename_sources() {
        let s = parse_rename_source(b"%2Facct%2Ffs%2Fdir%2Fa+b", "acct").unwrap();
        assert_eq!((s.fs.as_str(), s.path.as_str()), ("fs", "dir/a+b"));
        let s = parse_rename_source(b"/fs/x%20y?sv=1&sig=abc%2B", "acct").unwrap();
        assert_eq!((s.fs.as_str(), s.path.as_str()), ("fs", "x y"));
        assert_eq!(query_get(s.sas.as_ref().unwrap(), "sig"), Some("abc+"));
        // An encoded '?' is part of the name, not the start of a SAS.
        let s = parse_rename_source(b"/fs/x%3Fsig%3D1", "acct").unwrap();
        assert_eq!(s.path, "x?sig=1");
        assert!(s.sas.is_none());
        assert_eq!(
            parse_rename_source(b"/fs/a b", "acct").err().unwrap().code,
            "InvalidSourceUri"
        );
        assert_eq!(
            parse_rename_source("/fs/é".as_bytes(), "acct")
                .err()
                .unwrap()
                .code,
            "InvalidSourceUri"
        );
        assert_eq!(
            parse_rename_source(b"fs/a", "acct").err().unwrap().code,
            "InvalidSourceUri"
        );
        assert_eq!(
            parse_rename_source(b"/fs", "acct").err().unwrap().code,
            "InvalidSourceUri"
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-18446744073709551614"),
            Some((0, Some(u64::MAX - 1)))
        );
        assert_eq!(parse_range("bytes=5-"), Some((5, None)));
        assert_eq!(parse_range("bytes=5-1"), None);
        assert_eq!(parse_range("items=1-2"), None);
    }

    #[test]
    fn filesystem_names() {
        assert!(valid_filesystem_name("lake"));
        assert!(valid_filesystem_name("a-1"));
        assert!(!valid_filesystem_name("ab"));
        assert!(!valid_filesystem_name("Lake"));
        assert!(!valid_filesystem_name("a--b"));
        assert!(!valid_filesystem_name("-ab"));
    }
}
