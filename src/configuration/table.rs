//! Every setting the handler reads, in one table: its name, the Python seed's alias, what
//! kind of value it takes, its default and its help text.
//!
//! Parsing ([`super::vars`]), `handler --help` and the README's settings table
//! ([`super::docs`]) all come from this table. Code reads a setting only through a
//! [`Key`], and each key is a row of the table by construction (the macro below makes the
//! enum and the rows together), so a setting cannot be read without being listed here.

use std::time::Duration;

use crate::compact::{
    DEFAULT_COMPACT_DELAY, DEFAULT_COMPACT_SCHEDULE, DEFAULT_COMPACT_TIME_BUDGET,
};
use crate::domain::DEFAULT_TEMPLATE;
use crate::mirror::{
    DEFAULT_MAX_ROWS_PER_FILE, DEFAULT_MIRROR_SCHEDULE, DEFAULT_MIRROR_TIME_BUDGET,
};

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_CONTAINER: &str = "mongodb";
pub const DEFAULT_DIRECTORY: &str = "changes";
pub const DEFAULT_LAKE_DIR: &str = "./lake";
/// The Azure Functions HTTP request limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 100 * 1024 * 1024;
/// Request body bytes being handled at once, all requests together (`MAX_INFLIGHT_BYTES`):
/// see the README's "Memory" section for how it was chosen.
/// Sized so the handler stays under ~1 GiB on a 1.5 GB worker (README, "Memory").
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 128 * 1024 * 1024;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(25);
pub const DEFAULT_WRITE_CONCURRENCY: usize = 32;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(60);
/// The longest `GET /health` goes without news of the sink while idle: one storage request
/// per 30 s costs nothing, and an outage shows within half a minute.
pub const DEFAULT_HEALTH_PROBE: Duration = Duration::from_secs(30);
/// Azure Functions answers 502 to the caller after 230 s; retries must end well before.
pub(super) const MAX_RETRY_BUDGET_SECS: u64 = 180;
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
/// A signature is made for each attempt, so minutes are plenty; a longer window only
/// widens the time a captured request can be replayed.
const MAX_TOLERANCE_SECS: u64 = 3600;

/// One setting.
#[derive(Debug)]
pub struct Setting {
    pub key: Key,
    /// The name to use (upper case).
    pub name: &'static str,
    /// The Python function's lower-case name, accepted beside `name`.
    pub alias: Option<&'static str>,
    pub group: Group,
    pub kind: Kind,
    /// One or two sentences for `--help` and the README (Markdown code spans allowed).
    pub help: &'static str,
}

impl Setting {
    /// The name and the alias, as a setting may be spelled.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name).chain(self.alias)
    }

    /// Whether the handler reads this setting (every row but the host's own).
    pub fn is_read_by_handler(&self) -> bool {
        !matches!(self.kind, Kind::Host { .. })
    }
}

/// What a setting's value is, and its default (used when it is unset or empty).
#[derive(Debug)]
pub enum Kind {
    /// Text checked by the code that uses it (names, paths, URLs).
    Text { default: TextDefault },
    /// Text that is never printed, not even in error messages.
    Secret,
    /// A whole number in `min..=max`.
    Number {
        min: u64,
        max: u64,
        default: u64,
        unit: Unit,
    },
    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    Flag { default: bool },
    /// One of a few words, in any case.
    Choice {
        options: &'static [&'static str],
        default: Option<&'static str>,
    },
    /// Read by the Functions host (a `%NAME%` binding expression in a `function.json`),
    /// never by the handler: a row all the same, so the one table documents every
    /// setting the app has.
    Host { default: &'static str },
}

/// The default of a text setting.
#[derive(Debug)]
pub enum TextDefault {
    /// Unset means "not used".
    None,
    /// Unset means this value, parsed like a set one.
    Value(&'static str),
    /// Unset means something worked out from other settings; this describes it.
    Derived(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Bytes,
    Count,
}

/// The sections of `--help` and of the README's table, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Server,
    Lake,
    LocalLake,
    Adls,
    S3,
    Compaction,
    Mirror,
    Requests,
    Logs,
}

impl Group {
    pub const ALL: [Group; 9] = [
        Group::Lake,
        Group::LocalLake,
        Group::Adls,
        Group::S3,
        Group::Compaction,
        Group::Mirror,
        Group::Requests,
        Group::Server,
        Group::Logs,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Group::Lake => "Where records go and how they look",
            Group::LocalLake => "Local lake (the default: no ADLS account set)",
            Group::Adls => "ADLS Gen2 (an account and exactly one credential)",
            Group::S3 => "Amazon S3 and S3-compatible stores (S3_BUCKET set)",
            Group::Compaction => "Hourly compaction (the compact function and command)",
            Group::Mirror => "Fabric mirroring (the mirror function and command)",
            Group::Requests => "Requests",
            Group::Server => "Server and limits",
            Group::Logs => "Logs",
        }
    }
}

/// Declares [`Key`] and [`SETTINGS`] together: row `i` of the table is the key whose
/// discriminant is `i`, so every key has exactly one row.
macro_rules! settings_table {
    ($( $key:ident { $($field:ident: $value:expr),* $(,)? } )*) => {
        /// A setting, as code names it. See [`SETTINGS`] for its row.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Key { $($key),* }

        /// Every setting the handler reads.
        pub static SETTINGS: &[Setting] = &[
            $( Setting { key: Key::$key, $($field: $value),* } ),*
        ];
    };
}

impl Key {
    /// This key's row of the table.
    pub fn setting(self) -> &'static Setting {
        &SETTINGS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.setting().name
    }
}

/// Every name (and alias) the handler reads, e.g. to check that a deployment template sets
/// only settings that mean something.
pub fn setting_names() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().flat_map(Setting::names)
}

const fn seconds(default: Duration, max: u64) -> Kind {
    Kind::Number {
        min: 1,
        max,
        default: default.as_secs(),
        unit: Unit::Seconds,
    }
}

/// Upper bounds that keep arithmetic on a setting from overflowing (a deadline of
/// `now + u64::MAX` seconds panics, so does a semaphore of that many permits): far above
/// any sensible value.
const DAY_SECS: u64 = 86_400;
const WEEK_SECS: u64 = 7 * DAY_SECS;
const TIB: u64 = 1 << 40;

const fn between(default: usize, max: u64, unit: Unit) -> Kind {
    Kind::Number {
        min: 1,
        max,
        default: default as u64,
        unit,
    }
}

const fn text(default: &'static str) -> Kind {
    Kind::Text {
        default: TextDefault::Value(default),
    }
}

const NO_DEFAULT: Kind = Kind::Text {
    default: TextDefault::None,
};

settings_table! {
    StorageContainer {
        name: "STORAGE_CONTAINER", alias: Some("storage_container"), group: Group::Lake,
        kind: text(DEFAULT_CONTAINER),
        help: "ADLS filesystem (container); locally the first folder under `LOCAL_LAKE_DIR`. 3-63 lower-case letters, digits, hyphens.",
    }
    StorageDirectory {
        name: "STORAGE_DIRECTORY", alias: Some("storage_directory"), group: Group::Lake,
        kind: text(DEFAULT_DIRECTORY),
        help: "Folder inside the container (`a/b` allowed). Letters, digits, `. _ = -`.",
    }
    StorageFileName {
        name: "STORAGE_FILE_NAME", alias: Some("storage_file_name"), group: Group::Lake,
        kind: NO_DEFAULT,
        help: "Optional file-name prefix (the Python function's file name setting), at most 64 characters.",
    }
    PathTemplate {
        name: "PATH_TEMPLATE", alias: None, group: Group::Lake,
        kind: text(DEFAULT_TEMPLATE),
        help: "Folders below the directory. Placeholders: `{db} {coll} {operationType} {year} {month} {day} {hour}` (UTC, from `clusterTime`). The file name is always appended.",
    }
    RecordEncoding {
        name: "RECORD_ENCODING", alias: None, group: Group::Lake,
        kind: Kind::Choice { options: &["relaxed", "canonical"], default: Some("relaxed") },
        help: "Relaxed Extended JSON (plain numbers, ISO dates) or canonical (every BSON type kept exactly).",
    }
    LocalLakeDir {
        name: "LOCAL_LAKE_DIR", alias: None, group: Group::LocalLake,
        kind: text(DEFAULT_LAKE_DIR),
        help: "Root of the local lake; records go to `<LOCAL_LAKE_DIR>/<container>/<directory>/...`. Only without an account: both set is an error.",
    }
    LocalLakeFsync {
        name: "LOCAL_LAKE_FSYNC", alias: None, group: Group::LocalLake,
        kind: Kind::Flag { default: true },
        help: "Flush files to disk before answering 200. `false` only for throwaway lakes.",
    }
    StorageAccountName {
        name: "STORAGE_ACCOUNT_NAME", alias: Some("storage_account_name"), group: Group::Adls,
        kind: NO_DEFAULT,
        help: "ADLS Gen2 account (3-24 lower-case letters and digits). Without an account (or a connection string) records go to the local lake.",
    }
    StorageAccountKey {
        name: "STORAGE_ACCOUNT_KEY", alias: Some("storage_account_key"), group: Group::Adls,
        kind: Kind::Secret,
        help: "Credential 1: the account key (Shared Key), as the Python function used.",
    }
    StorageSasToken {
        name: "STORAGE_SAS_TOKEN", alias: Some("storage_sas_token"), group: Group::Adls,
        kind: Kind::Secret,
        help: "Credential 2: a SAS token (account SAS for the blob service, `sp=racwdl`, resource types container and object).",
    }
    StorageConnectionString {
        name: "STORAGE_CONNECTION_STRING", alias: Some("storage_connection_string"), group: Group::Adls,
        kind: Kind::Secret,
        help: "Credential 3: a connection string (`AccountName`, `AccountKey` or `SharedAccessSignature`, `EndpointSuffix`, `DefaultEndpointsProtocol`, `BlobEndpoint`, `DfsEndpoint`); replaces the account name.",
    }
    StorageAuth {
        name: "STORAGE_AUTH", alias: None, group: Group::Adls,
        kind: Kind::Choice { options: &["identity"], default: None },
        help: "Credential 4: `identity` = Microsoft Entra ID: the user-assigned managed identity `AZURE_CLIENT_ID` or `STORAGE_IDENTITY_OBJECT_ID` names, else the default chain (a service principal or workload identity from the environment, the system-assigned managed identity, the Azure CLI). Keys, SAS tokens and connection strings are chosen by setting them.",
    }
    AzureClientId {
        name: "AZURE_CLIENT_ID", alias: None, group: Group::Adls,
        kind: NO_DEFAULT,
        help: "Microsoft Entra ID (`STORAGE_AUTH=identity`, the mirror's landing zone): the client id of the Function App's user-assigned managed identity to use. With `AZURE_CLIENT_SECRET` or `AZURE_FEDERATED_TOKEN_FILE` it is a service principal's instead (with `AZURE_TENANT_ID`). A GUID; not a resource id.",
    }
    StorageIdentityObjectId {
        name: "STORAGE_IDENTITY_OBJECT_ID", alias: None, group: Group::Adls,
        kind: NO_DEFAULT,
        help: "Microsoft Entra ID: the user-assigned managed identity by its object (principal) id instead of `AZURE_CLIENT_ID`; both set is an error. A GUID.",
    }
    AzureClientSecret {
        name: "AZURE_CLIENT_SECRET", alias: None, group: Group::Adls,
        kind: Kind::Secret,
        help: "Microsoft Entra ID: a service principal's secret (with `AZURE_CLIENT_ID` and `AZURE_TENANT_ID`), read by the default chain. A managed identity needs no secret.",
    }
    AzureFederatedTokenFile {
        name: "AZURE_FEDERATED_TOKEN_FILE", alias: None, group: Group::Adls,
        kind: NO_DEFAULT,
        help: "Microsoft Entra ID: workload identity's token file (with `AZURE_CLIENT_ID` and `AZURE_TENANT_ID`), read by the default chain; set by Kubernetes.",
    }
    StorageDfsEndpoint {
        name: "STORAGE_DFS_ENDPOINT", alias: None, group: Group::Adls,
        kind: Kind::Text { default: TextDefault::Derived("https://<account>.dfs.core.windows.net/") },
        help: "Another endpoint: a sovereign cloud, or a local DFS server such as `http://127.0.0.1:10004/devstoreaccount1`.",
    }
    StorageBlobEndpoint {
        name: "STORAGE_BLOB_ENDPOINT", alias: None, group: Group::Adls,
        kind: Kind::Text { default: TextDefault::Derived("the DFS endpoint with .dfs. as .blob., or the connection string's BlobEndpoint") },
        help: "The same account's Blob endpoint, where `STORAGE_WRITE_PROTOCOL=blob` writes files; needed when `STORAGE_DFS_ENDPOINT` is not a `*.dfs.*` host (a local server such as `http://127.0.0.1:10000/devstoreaccount1`).",
    }
    StorageWriteProtocol {
        name: "STORAGE_WRITE_PROTOCOL", alias: None, group: Group::Adls,
        kind: Kind::Choice { options: &["blob", "dfs"], default: Some("blob") },
        help: "How a change file is written: `blob` = one conditional Put Blob (`If-None-Match: *`) on the Blob endpoint, one request per file; `dfs` = create, append with flush and a rename that never replaces, on the DFS endpoint (three requests), for networks that reach only the DFS endpoint. Reads, listings, deletes and compaction's large files use the DFS endpoint either way.",
    }
    StorageCreateFilesystem {
        name: "STORAGE_CREATE_FILESYSTEM", alias: None, group: Group::Adls,
        kind: Kind::Flag { default: false },
        help: "Create the container when it is missing; otherwise a missing container fails writes with a message naming this setting.",
    }
    StorageWriteConcurrency {
        name: "STORAGE_WRITE_CONCURRENCY", alias: None, group: Group::Adls,
        kind: Kind::Number { min: 1, max: 1024, default: DEFAULT_WRITE_CONCURRENCY as u64, unit: Unit::Count },
        help: "Files written to ADLS at once, process-wide.",
    }
    StorageRequestTimeoutSecs {
        name: "STORAGE_REQUEST_TIMEOUT_SECS", alias: None, group: Group::Adls,
        kind: seconds(DEFAULT_REQUEST_TIMEOUT, u64::MAX),
        help: "Longest wait for one storage request.",
    }
    StorageRetryBudgetSecs {
        name: "STORAGE_RETRY_BUDGET_SECS", alias: None, group: Group::Adls,
        kind: seconds(DEFAULT_RETRY_BUDGET, MAX_RETRY_BUDGET_SECS),
        help: "Longest time spent retrying one file (throttling, 5xx, network errors) before answering 503 (Azure Functions ends requests after 230 s; this plus twice the request timeout must be at most 220).",
    }
    StorageKind {
        name: "STORAGE_KIND", alias: None, group: Group::Lake,
        kind: Kind::Choice { options: &["local", "adls", "s3"], default: None },
        help: "Where records go. Unset: chosen by the settings (`S3_BUCKET` set: S3; an ADLS account or credential set: ADLS; else the local lake). Set, it must agree with them.",
    }
    S3Bucket {
        name: "S3_BUCKET", alias: None, group: Group::S3,
        kind: NO_DEFAULT,
        help: "The bucket records go to (it plays the container's part: keys start with `<S3_PREFIX>/<directory>/...`). Setting it selects S3. `STORAGE_WRITE_CONCURRENCY`, `STORAGE_REQUEST_TIMEOUT_SECS` and `STORAGE_RETRY_BUDGET_SECS` apply as for ADLS.",
    }
    S3Prefix {
        name: "S3_PREFIX", alias: None, group: Group::S3,
        kind: NO_DEFAULT,
        help: "Optional key prefix before the directory (`a/b` allowed; letters, digits, `. _ = -`), to share a bucket.",
    }
    AwsRegion {
        name: "AWS_REGION", alias: None, group: Group::S3,
        kind: Kind::Text { default: TextDefault::Derived("AWS_DEFAULT_REGION, else us-east-1") },
        help: "The bucket's region (S3 signs requests for it).",
    }
    S3Endpoint {
        name: "S3_ENDPOINT", alias: None, group: Group::S3,
        kind: Kind::Text { default: TextDefault::Derived("AWS's regional endpoint") },
        help: "An S3-compatible store instead of AWS (MinIO, Cloudflare R2, Ceph, a local test server): its base URL, `http://` allowed.",
    }
    S3PathStyle {
        name: "S3_PATH_STYLE", alias: None, group: Group::S3,
        kind: Kind::Flag { default: false },
        help: "Path-style requests (`<endpoint>/<bucket>/<key>`) instead of virtual-hosted ones (`<bucket>.<endpoint>/<key>`); most S3-compatible stores need it.",
    }
    AwsAccessKeyId {
        name: "AWS_ACCESS_KEY_ID", alias: None, group: Group::S3,
        kind: NO_DEFAULT,
        help: "Static credentials (with `AWS_SECRET_ACCESS_KEY`, and `AWS_SESSION_TOKEN` for temporary ones). Unset: the rest of the standard AWS chain, read from the environment: web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`), the ECS task role (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`), the EC2 instance profile.",
    }
    AwsSecretAccessKey {
        name: "AWS_SECRET_ACCESS_KEY", alias: None, group: Group::S3,
        kind: Kind::Secret,
        help: "The secret of `AWS_ACCESS_KEY_ID`.",
    }
    AwsSessionToken {
        name: "AWS_SESSION_TOKEN", alias: None, group: Group::S3,
        kind: Kind::Secret,
        help: "The session token of temporary static credentials (an assumed role; Lambda sets it).",
    }
    CompactEnabled {
        name: "COMPACT_ENABLED", alias: None, group: Group::Compaction,
        kind: Kind::Flag { default: true },
        help: "Compaction on: the `compact` function and command run passes, and the ingest leaves late markers for records of an hour a pass may have listed already. `false`: no compaction markers (the mirror's are still written when it is on), and a pass does nothing (also disable the function: `AzureWebJobs.compact.Disabled=true`). Off by itself when `STORAGE_DIRECTORY` is the container's root and `COMPACT_DIRECTORY` is not set (there is no folder beside it).",
    }
    CompactDirectory {
        name: "COMPACT_DIRECTORY", alias: None, group: Group::Compaction,
        kind: Kind::Text { default: TextDefault::Derived("<directory>-hourly") },
        help: "Folder inside the container for the hourly files (`a/b` allowed), beside the change directory, never inside it or around it. Default: the change directory's last folder plus `-hourly` (`changes` -> `changes-hourly`).",
    }
    CompactDelaySecs {
        name: "COMPACT_DELAY_SECS", alias: None, group: Group::Compaction,
        kind: seconds(DEFAULT_COMPACT_DELAY, WEEK_SECS),
        help: "An hour is compacted once it ended this long ago; records that come later go into a later part (`-2`, `-3`).",
    }
    CompactFormat {
        name: "COMPACT_FORMAT", alias: None, group: Group::Compaction,
        kind: Kind::Choice { options: &["jsonl", "parquet", "jsonl,parquet"], default: Some("jsonl") },
        help: "The files each hour is written as: JSON lines, Parquet (zstd), or both with the same rows.",
    }
    CompactDeleteSources {
        name: "COMPACT_DELETE_SOURCES", alias: None, group: Group::Compaction,
        kind: Kind::Flag { default: false },
        help: "Delete an hour's change files once its hourly files are durable (an ADLS lifecycle rule on the change directory is the alternative; see \"Hourly compaction\").",
    }
    CompactTimeBudgetSecs {
        name: "COMPACT_TIME_BUDGET_SECS", alias: None, group: Group::Compaction,
        kind: seconds(DEFAULT_COMPACT_TIME_BUDGET, DAY_SECS),
        help: "A pass starts no new hour after this long, so the timer function ends inside `functionTimeout` (5 minutes in `host.json`); the next pass continues.",
    }
    CompactSpoolDir {
        name: "COMPACT_SPOOL_DIR", alias: None, group: Group::Compaction,
        kind: Kind::Text { default: TextDefault::Derived("the system's temporary folder") },
        help: "Local folder for sort runs and hourly files before they are published (the worker's temporary disk on Azure).",
    }
    CompactSchedule {
        name: "COMPACT_SCHEDULE", alias: None, group: Group::Compaction,
        kind: Kind::Host { default: DEFAULT_COMPACT_SCHEDULE },
        help: "When the timer function runs: an NCRONTAB expression with seconds (`{second} {minute} {hour} {day} {month} {day-of-week}`, UTC unless `WEBSITE_TIME_ZONE` is set). It must be set in the app settings: `compact/function.json` reads it as `%COMPACT_SCHEDULE%`.",
    }
    MirrorLandingZone {
        name: "MIRROR_LANDING_ZONE", alias: None, group: Group::Mirror,
        kind: NO_DEFAULT,
        help: "Mirror on, into this landing zone: an https DFS URL of a folder, OneLake's `https://onelake.dfs.fabric.microsoft.com/<workspace>/<item>/Files/LandingZone` or `https://<account>.dfs.core.windows.net/<filesystem>/<folder>`. Always Microsoft Entra ID (the app's identity), whatever `STORAGE_AUTH` says. Not with `MIRROR_LOCAL_DIR`.",
    }
    MirrorLocalDir {
        name: "MIRROR_LOCAL_DIR", alias: None, group: Group::Mirror,
        kind: NO_DEFAULT,
        help: "Mirror on, into this local folder (the `LandingZone` folder's local equivalent: table folders directly inside it), for local runs. Neither this nor `MIRROR_LANDING_ZONE`: the mirror is off. Needs `COMPACT_DELETE_SOURCES=false`.",
    }
    MirrorMaxRowsPerFile {
        name: "MIRROR_MAX_ROWS_PER_FILE", alias: None, group: Group::Mirror,
        kind: Kind::Number { min: 1, max: 1_000_000, default: DEFAULT_MAX_ROWS_PER_FILE, unit: Unit::Count },
        help: "Change files one landing-zone data file takes at most (memory grows with it); a backlog becomes several files.",
    }
    MirrorTimeBudgetSecs {
        name: "MIRROR_TIME_BUDGET_SECS", alias: None, group: Group::Mirror,
        kind: seconds(DEFAULT_MIRROR_TIME_BUDGET, DAY_SECS),
        help: "A timer pass starts no new data file after this long, so it ends before the next tick; the next pass continues (`handler mirror` runs until it is done).",
    }
    MirrorSchedule {
        name: "MIRROR_SCHEDULE", alias: None, group: Group::Mirror,
        kind: Kind::Host { default: DEFAULT_MIRROR_SCHEDULE },
        help: "When the mirror timer function runs (NCRONTAB with seconds, as `COMPACT_SCHEDULE`). It must be set in the app settings when the mirror is on: `mirror/function.json` reads it as `%MIRROR_SCHEDULE%`.",
    }
    MaxBodyBytes {
        name: "MAX_BODY_BYTES", alias: None, group: Group::Requests,
        kind: between(DEFAULT_MAX_BODY_BYTES, TIB, Unit::Bytes),
        help: "Largest request body (the Azure Functions limit); 413 above.",
    }
    IngestHmacSecret {
        name: "INGEST_HMAC_SECRET", alias: None, group: Group::Requests,
        kind: Kind::Secret,
        help: "Signed requests: every request must carry a valid `X-Ingest-Signature` made with this secret, else 401. At least 16 characters. Unset: unsigned requests are accepted and start-up logs a warning.",
    }
    IngestHmacToleranceSecs {
        name: "INGEST_HMAC_TOLERANCE_SECS", alias: None, group: Group::Requests,
        kind: seconds(Duration::from_secs(DEFAULT_TOLERANCE_SECS), MAX_TOLERANCE_SECS),
        help: "Largest difference between a signature's timestamp and the handler's clock, either way.",
    }
    FunctionsCustomhandlerPort {
        name: "FUNCTIONS_CUSTOMHANDLER_PORT", alias: None, group: Group::Server,
        kind: Kind::Number { min: 0, max: u16::MAX as u64, default: DEFAULT_PORT as u64, unit: Unit::Count },
        help: "Set by the Functions host. The handler listens on `127.0.0.1:<port>`.",
    }
    BindAddr {
        name: "BIND_ADDR", alias: None, group: Group::Server,
        kind: text("127.0.0.1"),
        help: "An IP or `IP:port` to listen on instead.",
    }
    HeaderReadTimeoutSecs {
        name: "HEADER_READ_TIMEOUT_SECS", alias: None, group: Group::Server,
        kind: seconds(DEFAULT_HEADER_READ_TIMEOUT, DAY_SECS),
        help: "A request head (request line and headers) must arrive within this, on a new connection or once its first byte has come on a kept-alive one; else the connection is closed.",
    }
    BodyReadTimeoutSecs {
        name: "BODY_READ_TIMEOUT_SECS", alias: None, group: Group::Server,
        kind: seconds(DEFAULT_BODY_READ_TIMEOUT, DAY_SECS),
        help: "A request body must have fully arrived this long after its head; else 408 `request_timeout` (nothing is written; the Atlas side retries) and the connection is closed.",
    }
    IdleTimeoutSecs {
        name: "IDLE_TIMEOUT_SECS", alias: None, group: Group::Server,
        kind: seconds(DEFAULT_IDLE_TIMEOUT, DAY_SECS),
        help: "A kept-alive connection with no new request for this long is closed (longer than the host's own 60 s pool idle timeout, so the host closes first).",
    }
    MaxConnections {
        name: "MAX_CONNECTIONS", alias: None, group: Group::Server,
        kind: between(DEFAULT_MAX_CONNECTIONS, 1_000_000, Unit::Count),
        help: "Connections served at once; further ones wait in the listen backlog until one closes. Capped at half the open-file limit (start-up logs a warning).",
    }
    ShutdownTimeoutSecs {
        name: "SHUTDOWN_TIMEOUT_SECS", alias: None, group: Group::Server,
        kind: seconds(DEFAULT_SHUTDOWN_TIMEOUT, DAY_SECS),
        help: "After SIGTERM, the longest the handler takes to exit: requests whose body has arrived finish within it (see \"Slow clients and shutdown\").",
    }
    MaxInflightBytes {
        name: "MAX_INFLIGHT_BYTES", alias: None, group: Group::Server,
        kind: between(DEFAULT_MAX_INFLIGHT_BYTES, TIB, Unit::Bytes),
        help: "Request bytes held at once over all requests (from the moment a body is read until its files are stored); a request that cannot fit within 2 s gets 503 with Retry-After. At least `MAX_BODY_BYTES`. See \"Memory\".",
    }
    HealthProbeSecs {
        name: "HEALTH_PROBE_SECS", alias: None, group: Group::Server,
        kind: seconds(DEFAULT_HEALTH_PROBE, DAY_SECS),
        help: "`GET /health` answers from what was last seen of the storage: a write, or a probe (one storage request) sent when nothing was seen for this long. Never a storage request per call.",
    }
    LogFormat {
        name: "LOG_FORMAT", alias: None, group: Group::Logs,
        kind: Kind::Choice { options: &["text", "json"], default: Some("text") },
        help: "`json`: one object per line, for Application Insights.",
    }
    RustLog {
        name: "RUST_LOG", alias: None, group: Group::Logs,
        kind: text("info"),
        help: "Log filter (`tracing` directives, e.g. `debug` or `mongo_lake_ingest=debug`). The storage and HTTP client libraries stay at `info`.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_row_is_its_keys_row() {
        for (index, setting) in SETTINGS.iter().enumerate() {
            assert_eq!(setting.key as usize, index, "{}", setting.name);
            assert!(std::ptr::eq(setting.key.setting(), setting));
        }
    }

    #[test]
    fn names_and_aliases_are_unique() {
        let mut seen = HashSet::new();
        for name in setting_names() {
            assert!(seen.insert(name), "{name} twice");
        }
        // Nor do two settings differ only in case (Windows environments ignore case).
        let mut upper = HashSet::new();
        for setting in SETTINGS {
            assert!(
                upper.insert(setting.name.to_ascii_uppercase()),
                "{}",
                setting.name
            );
        }
    }

    #[test]
    fn names_are_upper_case_and_aliases_are_the_lower_case_name() {
        for setting in SETTINGS {
            assert_eq!(setting.name, setting.name.to_ascii_uppercase());
            if let Some(alias) = setting.alias {
                assert_eq!(alias, setting.name.to_ascii_lowercase());
            }
        }
    }

    #[test]
    fn every_setting_has_help_and_a_group_that_is_shown() {
        for setting in SETTINGS {
            let help = setting.help.trim();
            assert!(help.len() >= 20, "{} needs help text", setting.name);
            assert!(help.ends_with('.'), "{}: a sentence", setting.name);
            assert!(Group::ALL.contains(&setting.group), "{}", setting.name);
        }
    }

    #[test]
    fn number_defaults_are_in_their_range() {
        for setting in SETTINGS {
            if let Kind::Number {
                min, max, default, ..
            } = setting.kind
            {
                assert!((min..=max).contains(&default), "{}", setting.name);
            }
            if let Kind::Choice {
                options,
                default: Some(default),
            } = setting.kind
            {
                assert!(options.contains(&default), "{}", setting.name);
            }
        }
    }
}
