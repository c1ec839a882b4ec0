//! An in-memory stand-in for the Azure Data Lake Storage Gen2 DFS endpoint, for tests and
//! benchmarks (Azurite has no DFS endpoint).
//!
//! It speaks the REST protocol as the service does, at path-style URLs as the emulators use
//! (`http://127.0.0.1:<port>/<account>/<filesystem>/<path>`): the status codes, the
//! `x-ms-error-code` header and `{"error":{"code","message"}}` body, `x-ms-request-id`,
//! `x-ms-version`, `ETag`, `Last-Modified`, `Date` and `Server` headers, and Shared Key, account
//! SAS and bearer-token authorization verified for real. On top of that a test can inject
//! faults (error answers, dropped connections, lost responses, delays, a crash), count
//! connections and requests, and look at the namespace directly.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use dfs_test_server::{DfsServer, FaultAction, FaultRule, OpKind};
//! let server = DfsServer::builder().filesystem("lake").start().await?;
//! // http://127.0.0.1:<port>/devstoreaccount1/ for CloudLocation::Custom
//! let endpoint = server.endpoint();
//! // The next flush is applied but its response is lost.
//! server.faults().push(FaultRule::new(OpKind::Flush, FaultAction::ApplyThenDrop));
//! # let _ = endpoint; Ok(()) }
//! ```
//!
//! Deviations from the real service are listed in the crate's README.md.

mod auth;
mod blob;
mod error;
mod faults;
mod ops;
mod server;
mod store;
mod util;

pub use auth::{account_sas, AccountSas, Auth};
pub use faults::{FaultAction, FaultRule, Faults, OpMatch};
pub use store::PathKind;

use auth::{Account, AuthConfig};
use base64::Engine;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use store::{Filesystem, Node, Store};
use tokio::sync::watch;

/// The development account Azurite and the storage emulator use.
pub const DEV_ACCOUNT: &str = "devstoreaccount1";
/// The development account's well-known key.
pub const DEV_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The REST version answered when a request names none.
pub const DEFAULT_VERSION: &str = "2022-11-02";

/// The kinds of request the server tells apart (for counters and fault rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// `GET /<account>/?resource=account`
    ListFilesystems,
    /// `PUT /<fs>?resource=filesystem`
    CreateFilesystem,
    /// `HEAD /<fs>?resource=filesystem`
    GetFilesystemProperties,
    /// `PATCH /<fs>?resource=filesystem`
    SetFilesystemProperties,
    /// `DELETE /<fs>?resource=filesystem`
    DeleteFilesystem,
    /// `GET /<fs>?resource=filesystem&recursive=…`
    ListPaths,
    /// `PUT /<fs>/<path>?resource=file`
    CreateFile,
    /// `PUT /<fs>/<path>?resource=directory`
    CreateDirectory,
    /// `PATCH /<fs>/<path>?action=append&position=N`
    Append,
    /// `PATCH /<fs>/<path>?action=flush&position=N`
    Flush,
    /// `PUT /<fs>/<dest>` with `x-ms-rename-source`
    Rename,
    /// `PATCH /<fs>/<path>?action=setProperties`
    SetProperties,
    /// `HEAD /<fs>/<path>`
    GetProperties,
    /// `GET /<fs>/<path>`
    Read,
    /// `DELETE /<fs>/<path>`
    Delete,
    /// Blob endpoint: `PUT /<container>/<path>` with `x-ms-blob-type: BlockBlob` (Put Blob).
    PutBlob,
    /// Blob endpoint: `HEAD /<container>/<path>` (Get Blob Properties).
    GetBlobProperties,
    /// Anything else (answered with an error).
    Unsupported,
}

impl OpKind {
    /// Every kind, in declaration order.
    pub const ALL: [OpKind; 18] = [
        OpKind::ListFilesystems,
        OpKind::CreateFilesystem,
        OpKind::GetFilesystemProperties,
        OpKind::SetFilesystemProperties,
        OpKind::DeleteFilesystem,
        OpKind::ListPaths,
        OpKind::CreateFile,
        OpKind::CreateDirectory,
        OpKind::Append,
        OpKind::Flush,
        OpKind::Rename,
        OpKind::SetProperties,
        OpKind::GetProperties,
        OpKind::Read,
        OpKind::Delete,
        OpKind::PutBlob,
        OpKind::GetBlobProperties,
        OpKind::Unsupported,
    ];

    /// Operations on a filesystem (or the account) rather than a path.
    pub fn is_filesystem_op(self) -> bool {
        matches!(
            self,
            OpKind::ListFilesystems
                | OpKind::CreateFilesystem
                | OpKind::GetFilesystemProperties
                | OpKind::SetFilesystemProperties
                | OpKind::DeleteFilesystem
                | OpKind::ListPaths
        )
    }

    /// Operations that change state.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            OpKind::CreateFilesystem
                | OpKind::SetFilesystemProperties
                | OpKind::DeleteFilesystem
                | OpKind::CreateFile
                | OpKind::CreateDirectory
                | OpKind::Append
                | OpKind::Flush
                | OpKind::Rename
                | OpKind::SetProperties
                | OpKind::Delete
                | OpKind::PutBlob
        )
    }
}

/// Counters since start or the last [`DfsServer::reset_stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections accepted.
    pub connections: u64,
    /// HTTP requests received (whatever became of them).
    pub requests: u64,
    /// Requests by kind (kinds never seen are absent).
    pub by_op: BTreeMap<OpKind, u64>,
    /// Requests a fault rule hit.
    pub faults_fired: u64,
    /// Connections the server closed on purpose (faults, crash).
    pub connections_dropped: u64,
}

impl Stats {
    /// Requests of one kind.
    pub fn op(&self, k: OpKind) -> u64 {
        self.by_op.get(&k).copied().unwrap_or(0)
    }
}

pub(crate) struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    by_op: [AtomicU64; OpKind::ALL.len()],
    faults_fired: AtomicU64,
    connections_dropped: AtomicU64,
}

impl Counters {
    fn new() -> Self {
        Counters {
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            by_op: std::array::from_fn(|_| AtomicU64::new(0)),
            faults_fired: AtomicU64::new(0),
            connections_dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn op(&self, k: OpKind) {
        self.by_op[k as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A request as received (see [`DfsServerBuilder::record_requests`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query exactly as in the request line.
    pub uri: String,
    /// Names lower-case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
    pub op: OpKind,
}

impl RecordedRequest {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One path as [`DfsServer::paths`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathEntry {
    /// Full name inside the filesystem (`dir/sub/file.json`).
    pub path: String,
    pub kind: PathKind,
    /// Committed (flushed) length.
    pub len: u64,
    /// Appended but not yet flushed bytes.
    pub staged: u64,
    /// As the `ETag` header carries it (quoted).
    pub etag: String,
}

pub(crate) struct Shared {
    pub account: Account,
    pub auth: AuthConfig,
    pub max_skew: Duration,
    pub store: Mutex<Store>,
    pub faults: Faults,
    pub counters: Counters,
    pub crashed: AtomicBool,
    pub crash_tx: watch::Sender<u64>,
    pub ids: util::IdGen,
    pub log: Option<Mutex<Vec<RecordedRequest>>>,
}

impl Shared {
    pub(crate) fn crash(&self) {
        self.crashed.store(true, Ordering::SeqCst);
        self.crash_tx.send_modify(|g| *g += 1);
    }
}

/// Which of the account's endpoints a listener serves: the DFS endpoint
/// (`<account>.dfs.core.windows.net`) or the Blob endpoint (`<account>.blob.core.windows.net`).
/// Both share one namespace, as on an account with a hierarchical namespace: a blob put
/// through one is a file through the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Dfs,
    Blob,
}

/// Configures and starts a [`DfsServer`].
pub struct DfsServerBuilder {
    account: String,
    key_b64: String,
    auth: AuthConfig,
    auth_set: bool,
    filesystems: Vec<String>,
    bind: SocketAddr,
    max_skew: Duration,
    record: bool,
}

impl DfsServerBuilder {
    /// The account (default [`DEV_ACCOUNT`] with [`DEV_ACCOUNT_KEY`]); the key is base64.
    pub fn account(mut self, name: &str, key_b64: &str) -> Self {
        self.account = name.to_owned();
        self.key_b64 = key_b64.to_owned();
        self
    }

    /// Accepts this way of authorizing, in addition to those already given. Without any
    /// call the server accepts [`Auth::SharedKey`] and [`Auth::Sas`].
    pub fn auth(mut self, a: Auth) -> Self {
        self.auth.add(a);
        self.auth_set = true;
        self
    }

    /// Shorthand for `auth(Auth::Bearer(vec![token]))`.
    pub fn bearer_token(self, token: &str) -> Self {
        self.auth(Auth::Bearer(vec![token.to_owned()]))
    }

    /// Shorthand for `auth(Auth::BearerWithoutPermission(vec![token]))`.
    pub fn bearer_token_without_permission(self, token: &str) -> Self {
        self.auth(Auth::BearerWithoutPermission(vec![token.to_owned()]))
    }

    /// A filesystem that exists from the start.
    pub fn filesystem(mut self, name: &str) -> Self {
        self.filesystems.push(name.to_owned());
        self
    }

    /// Where to listen (default `127.0.0.1:0`, an ephemeral port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// How far `x-ms-date` may be from the server's clock (default 15 minutes).
    pub fn max_clock_skew(mut self, d: Duration) -> Self {
        self.max_skew = d;
        self
    }

    /// Keeps every request's method, URI and headers for [`DfsServer::requests`]: to see
    /// exactly what a client puts on the wire.
    pub fn record_requests(mut self) -> Self {
        self.record = true;
        self
    }

    fn shared(self) -> io::Result<(Arc<Shared>, SocketAddr)> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(&self.key_b64)
            .map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("account key: {e}"))
            })?;
        let mut auth = self.auth;
        if !self.auth_set {
            auth.add(Auth::SharedKey);
            auth.add(Auth::Sas);
        }
        let ids = util::IdGen::new();
        let mut store = Store::new(ids.seed());
        let now = SystemTime::now();
        for fs in self.filesystems {
            let e = store.etag();
            store.filesystems.insert(fs, Filesystem::new(e, now));
        }
        let (crash_tx, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            account: Account {
                name: self.account,
                key,
            },
            auth,
            max_skew: self.max_skew,
            store: Mutex::new(store),
            faults: Faults::default(),
            counters: Counters::new(),
            crashed: AtomicBool::new(false),
            crash_tx,
            ids,
            log: self.record.then(|| Mutex::new(Vec::new())),
        });
        Ok((shared, self.bind))
    }

    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(self) -> io::Result<DfsServer> {
        let (shared, bind) = self.shared()?;
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let blob_listener = tokio::net::TcpListener::bind(blob_bind(addr)).await?;
        let blob_addr = blob_listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(server::accept_loop(
            listener,
            shared.clone(),
            shutdown_rx.clone(),
            Service::Dfs,
        ));
        tokio::spawn(server::accept_loop(
            blob_listener,
            shared.clone(),
            shutdown_rx,
            Service::Blob,
        ));
        Ok(DfsServer {
            shared,
            addr,
            blob_addr,
            shutdown,
        })
    }

    /// Binds and starts serving on a thread of its own with its own tokio runtime (two
    /// workers), so the server does not compete with the code under test for its runtime.
    /// Callable from synchronous code.
    pub fn start_in_thread(self) -> io::Result<DfsServer> {
        let (shared, bind) = self.shared()?;
        let std_listener = std::net::TcpListener::bind(bind)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let std_blob_listener = std::net::TcpListener::bind(blob_bind(addr))?;
        std_blob_listener.set_nonblocking(true)?;
        let blob_addr = std_blob_listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dfs-test-server")
            .enable_all()
            .build()?;
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("dfs-test-server".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listeners =
                        tokio::net::TcpListener::from_std(std_listener).and_then(|dfs| {
                            Ok((dfs, tokio::net::TcpListener::from_std(std_blob_listener)?))
                        });
                    let (listener, blob_listener) = match listeners {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("dfs-test-server: {e}");
                            return;
                        }
                    };
                    tokio::join!(
                        server::accept_loop(
                            listener,
                            thread_shared.clone(),
                            shutdown_rx.clone(),
                            Service::Dfs
                        ),
                        server::accept_loop(
                            blob_listener,
                            thread_shared,
                            shutdown_rx,
                            Service::Blob
                        ),
                    );
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(DfsServer {
            shared,
            addr,
            blob_addr,
            shutdown,
        })
    }
}

/// The Blob endpoint listens on the DFS endpoint's address with a port of its own
/// (ephemeral), as the service has a host of its own for each.
fn blob_bind(dfs: SocketAddr) -> SocketAddr {
    SocketAddr::new(dfs.ip(), 0)
}

/// A running server. Dropping it stops it (listener and open connections closed).
pub struct DfsServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    blob_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl DfsServer {
    pub fn builder() -> DfsServerBuilder {
        DfsServerBuilder {
            account: DEV_ACCOUNT.to_owned(),
            key_b64: DEV_ACCOUNT_KEY.to_owned(),
            auth: AuthConfig::default(),
            auth_set: false,
            filesystems: Vec::new(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_skew: Duration::from_secs(15 * 60),
            record: false,
        }
    }

    /// `http://127.0.0.1:<port>/<account>/`, with the trailing slash that
    /// `CloudLocation::Custom { uri, .. }` needs for the client's URL joins to keep the account.
    pub fn endpoint(&self) -> String {
        format!("http://{}/{}/", self.addr, self.shared.account.name)
    }

    /// The same account's Blob endpoint, `http://127.0.0.1:<other port>/<account>/`: Put
    /// Blob and Get Blob Properties, on the namespace the DFS endpoint serves.
    pub fn blob_endpoint(&self) -> String {
        format!("http://{}/{}/", self.blob_addr, self.shared.account.name)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn account(&self) -> &str {
        &self.shared.account.name
    }

    /// The account key, base64.
    pub fn account_key(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.shared.account.key)
    }

    /// An account SAS for this server's account with these permissions (e.g. `"racwdl"`),
    /// valid for an hour.
    pub fn account_sas(&self, permissions: &str) -> String {
        account_sas(
            &self.shared.account.name,
            &self.account_key(),
            permissions,
            Duration::from_secs(3600),
        )
    }

    /// The fault rules: `server.faults().push(FaultRule::new(…))`.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let by_op = OpKind::ALL
            .iter()
            .filter_map(|&k| {
                let n = c.by_op[k as usize].load(Ordering::Relaxed);
                (n > 0).then_some((k, n))
            })
            .collect();
        Stats {
            connections: c.connections.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            by_op,
            faults_fired: c.faults_fired.load(Ordering::Relaxed),
            connections_dropped: c.connections_dropped.load(Ordering::Relaxed),
        }
    }

    pub fn reset_stats(&self) {
        let c = &self.shared.counters;
        c.connections.store(0, Ordering::Relaxed);
        c.requests.store(0, Ordering::Relaxed);
        for k in &c.by_op {
            k.store(0, Ordering::Relaxed);
        }
        c.faults_fired.store(0, Ordering::Relaxed);
        c.connections_dropped.store(0, Ordering::Relaxed);
    }

    /// Whether a [`FaultAction::Crash`] has fired (and [`DfsServer::recover`] not been called).
    pub fn is_crashed(&self) -> bool {
        self.shared.crashed.load(Ordering::SeqCst)
    }

    /// Crashes the server now, as [`FaultAction::Crash`] does.
    pub fn crash(&self) {
        self.shared.crash();
    }

    /// Serves again after a crash; the namespace is as the crash left it.
    pub fn recover(&self) {
        self.shared.crashed.store(false, Ordering::SeqCst);
    }

    /// The requests received so far, oldest first (empty unless
    /// [`DfsServerBuilder::record_requests`]).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .log
            .as_ref()
            .map(|l| l.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        if let Some(l) = &self.shared.log {
            l.lock().unwrap().clear();
        }
    }

    fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.shared.store.lock().unwrap())
    }

    /// Names of the filesystems.
    pub fn filesystems(&self) -> Vec<String> {
        self.with_store(|s| s.filesystems.keys().cloned().collect())
    }

    /// Every path in `fs` (directories included), parents before children; empty for a
    /// missing filesystem.
    pub fn paths(&self, fs: &str) -> Vec<PathEntry> {
        self.with_store(|s| {
            let Some(f) = s.filesystems.get(fs) else {
                return Vec::new();
            };
            let mut v: Vec<PathEntry> = f
                .paths
                .iter()
                .map(|(k, n)| PathEntry {
                    path: k.clone(),
                    kind: n.kind,
                    len: n.data.len() as u64,
                    staged: n.staged_len(),
                    etag: store::etag_header(n.etag),
                })
                .collect();
            v.sort_by(|a, b| store::hierarchical_cmp(&a.path, &b.path));
            v
        })
    }

    /// The files in `fs` (no directories), parents' order as in [`DfsServer::paths`].
    pub fn files(&self, fs: &str) -> Vec<PathEntry> {
        let mut v = self.paths(fs);
        v.retain(|p| p.kind == PathKind::File);
        v
    }

    /// A file's committed contents; `None` for a missing path or a directory.
    pub fn read(&self, fs: &str, path: &str) -> Option<Bytes> {
        self.with_store(|s| {
            let n = s.filesystems.get(fs)?.paths.get(path)?;
            (n.kind == PathKind::File).then(|| n.data.clone())
        })
    }

    /// A file's committed contents as UTF-8 (lossy); `None` as for [`DfsServer::read`].
    pub fn read_string(&self, fs: &str, path: &str) -> Option<String> {
        self.read(fs, path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Whether the path exists and what it is.
    pub fn kind(&self, fs: &str, path: &str) -> Option<PathKind> {
        self.with_store(|s| Some(s.filesystems.get(fs)?.paths.get(path)?.kind))
    }

    /// Whether a file exists at the path.
    pub fn file_exists(&self, fs: &str, path: &str) -> bool {
        self.kind(fs, path) == Some(PathKind::File)
    }

    /// Whether anything (file or directory) exists at the path.
    pub fn exists(&self, fs: &str, path: &str) -> bool {
        self.kind(fs, path).is_some()
    }

    /// Bytes appended to a file but not flushed; `None` for a missing path.
    pub fn staged_len(&self, fs: &str, path: &str) -> Option<u64> {
        self.with_store(|s| Some(s.filesystems.get(fs)?.paths.get(path)?.staged_len()))
    }

    /// Creates a filesystem if it is missing.
    pub fn create_filesystem(&self, fs: &str) {
        self.with_store(|s| {
            if !s.filesystems.contains_key(fs) {
                let e = s.etag();
                s.filesystems
                    .insert(fs.to_owned(), Filesystem::new(e, SystemTime::now()));
            }
        })
    }

    /// Writes a committed file (replacing any file there), creating the filesystem and the
    /// parent directories as needed. Panics if a parent is a file or the path is a directory.
    pub fn put_file(&self, fs: &str, path: &str, data: impl Into<Bytes>) {
        let data = data.into();
        self.with_path(fs, path, PathKind::File, |n, etag, now| {
            n.data = data;
            n.staged.clear();
            n.etag = etag;
            n.modified = now;
        })
    }

    /// Creates a directory and its parents, creating the filesystem as needed.
    pub fn create_dir(&self, fs: &str, path: &str) {
        self.with_path(fs, path, PathKind::Directory, |_, _, _| {})
    }

    /// Finds or makes the path `path` of kind `kind` (with its filesystem and parents) and
    /// lets `change` update it. Panics if something of the other kind is in the way.
    fn with_path(
        &self,
        fs: &str,
        path: &str,
        kind: PathKind,
        change: impl FnOnce(&mut Node, u64, SystemTime),
    ) {
        self.create_filesystem(fs);
        self.with_store(|s| {
            let now = SystemTime::now();
            let etag = s.etag();
            let f = s.filesystems.get_mut(fs).unwrap();
            make_parents(f, path, etag, now);
            let n = f
                .paths
                .entry(path.to_owned())
                .or_insert_with(|| Node::new(kind, etag, now));
            assert_eq!(n.kind, kind, "{path} is in the way: it is a {:?}", n.kind);
            change(n, etag, now);
        })
    }

    /// Removes a path and everything under it; whether it existed.
    pub fn remove(&self, fs: &str, path: &str) -> bool {
        self.with_store(|s| {
            let Some(f) = s.filesystems.get_mut(fs) else {
                return false;
            };
            for k in f.descendant_keys(path) {
                f.paths.remove(&k);
            }
            f.paths.remove(path).is_some()
        })
    }

    /// Stops serving (as dropping does).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

fn make_parents(f: &mut Filesystem, path: &str, etag: u64, now: SystemTime) {
    match f.ancestors(path) {
        store::Ancestors::Present => {}
        store::Ancestors::File(p) => panic!("{p} is a file"),
        store::Ancestors::Missing(m) => {
            for p in m {
                f.paths.insert(p, Node::new(PathKind::Directory, etag, now));
            }
        }
    }
}

impl Drop for DfsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for DfsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DfsServer")
            .field("endpoint", &self.endpoint())
            .finish()
    }
}
