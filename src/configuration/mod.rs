//! Settings from environment variables (Azure app settings arrive as environment
//! variables). Read once at start-up; anything invalid or contradictory stops start-up
//! with one message that names the setting.
//!
//! Every setting is a row of one table ([`SETTINGS`]: name, alias, kind, default, help),
//! which parsing, `handler --help` and the README's settings table all come from. The
//! Python function's lower-case names (`storage_container`, ...) are accepted beside the
//! upper-case `STORAGE_*` ones so its users can switch without renaming settings.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::compact::CompactSettings;
use crate::domain::{Encoding, PathLayout, Segment};
use crate::mirror::MirrorSettings;

mod compact;
mod connection_string;
mod docs;
mod identity;
mod mirror;
mod s3;
mod signing;
mod storage;
mod table;
mod vars;

pub use docs::{settings_help, settings_markdown};
pub use identity::{EntraIdentity, UserAssigned};
pub use mirror::{LandingZone, LandingZoneUrl};
pub use s3::{S3Settings, StaticKeys};
pub use signing::SigningSettings;
pub use storage::{AdlsSettings, Credential, Secret, StorageSettings, WriteProtocol};
pub use table::{
    setting_names, Group, Key, Kind, Setting, TextDefault, Unit, DEFAULT_BODY_READ_TIMEOUT,
    DEFAULT_CONTAINER, DEFAULT_DIRECTORY, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LAKE_DIR, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_PORT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_BUDGET, DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TOLERANCE_SECS, DEFAULT_WRITE_CONCURRENCY, SETTINGS,
};
use vars::Vars;

const MAX_FILE_PREFIX: usize = 64;

/// What keeps the worker alive whatever its clients do: how long a client may take, how
/// many may connect, and how much request data is handled at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// A request's headers must arrive within this (`HEADER_READ_TIMEOUT_SECS`).
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this (`BODY_READ_TIMEOUT_SECS`).
    pub body_read_timeout: Duration,
    /// A kept-alive connection with no request is closed after this (`IDLE_TIMEOUT_SECS`).
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// After SIGTERM, requests in flight get this long before the process exits
    /// (`SHUTDOWN_TIMEOUT_SECS`).
    pub shutdown_timeout: Duration,
    /// Body bytes handled at once over all requests (`MAX_INFLIGHT_BYTES`).
    pub max_inflight_bytes: usize,
}

/// The table's defaults (the same constants its rows use).
impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
        }
    }
}

/// A setting that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting}: {problem}")]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    fn new(setting: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            setting: setting.to_owned(),
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub storage: StorageSettings,
    /// The Microsoft Entra ID identity for bearer tokens (`AZURE_CLIENT_ID`,
    /// `STORAGE_IDENTITY_OBJECT_ID`): the change-file sink's and the landing zone's.
    pub identity: EntraIdentity,
    /// The ADLS filesystem (container); locally, the first folder under the lake dir.
    pub container: String,
    pub layout: PathLayout,
    pub encoding: Encoding,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    /// `RUST_LOG`: which log lines are written (checked at start-up).
    pub log_filter: String,
    /// Request signatures (`INGEST_HMAC_SECRET`); `None` accepts unsigned requests.
    pub signing: Option<SigningSettings>,
    pub limits: ServerLimits,
    /// Hourly compaction (`COMPACT_*`): the `/compact` function and `handler compact`.
    pub compact: CompactSettings,
    /// Fabric mirroring (`MIRROR_*`): the `/mirror` function and `handler mirror`.
    pub mirror: MirrorSettings,
    /// Where the mirror publishes; `None` when it is off.
    pub landing_zone: Option<LandingZone>,
    /// How long the sink may go unobserved before the health watch probes it
    /// (`HEALTH_PROBE_SECS`).
    pub health_probe_interval: Duration,
}

impl Settings {
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    /// Empty values count as unset, as an empty Azure app setting is.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let vars = Vars::new(lookup);
        let identity = identity::from_vars(&vars)?;
        let storage = storage::from_vars(&vars, &identity)?;
        let signing = signing::from_vars(&vars)?;
        let (container, layout) = lake_layout(&vars)?;
        let compact = compact::from_vars(&vars, layout.directory())?;
        let (mirror, landing_zone) = mirror::from_vars(&vars, &compact, layout.directory())?;
        let encoding = match vars.choice(Key::RecordEncoding)? {
            Some("canonical") => Encoding::Canonical,
            _ => Encoding::Relaxed,
        };
        let log_format = match vars.choice(Key::LogFormat)? {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let log_filter = required_text(&vars, Key::RustLog)?;
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&log_filter.text) {
            return Err(ConfigError::new(
                log_filter.setting,
                format!("{:?} is not a log filter: {error}", log_filter.text),
            ));
        }
        let max_body_bytes = vars.number(Key::MaxBodyBytes)?;
        let limits = ServerLimits {
            header_read_timeout: vars.seconds(Key::HeaderReadTimeoutSecs)?,
            body_read_timeout: vars.seconds(Key::BodyReadTimeoutSecs)?,
            idle_timeout: vars.seconds(Key::IdleTimeoutSecs)?,
            max_connections: vars.number(Key::MaxConnections)?,
            shutdown_timeout: vars.seconds(Key::ShutdownTimeoutSecs)?,
            max_inflight_bytes: vars.number(Key::MaxInflightBytes)?,
        };
        if limits.max_inflight_bytes < max_body_bytes {
            return Err(ConfigError::new(
                Key::MaxInflightBytes.name(),
                format!("is smaller than MAX_BODY_BYTES ({max_body_bytes}): the largest request could never run"),
            ));
        }
        Ok(Settings {
            listen: listen_address(&vars)?,
            storage,
            identity,
            container,
            layout,
            encoding,
            max_body_bytes,
            log_format,
            log_filter: log_filter.text,
            signing,
            limits,
            compact,
            mirror,
            landing_zone,
            health_probe_interval: vars.seconds(Key::HealthProbeSecs)?,
        })
    }

    /// Where records go, for the start-up line: the absolute lake folder, or the ADLS
    /// endpoint, filesystem and directory.
    pub fn records_location(&self) -> String {
        self.storage
            .records_location(&self.container, self.layout.directory())
    }
}

/// `127.0.0.1:<FUNCTIONS_CUSTOMHANDLER_PORT>`, or `BIND_ADDR` (an IP, or IP:port).
fn listen_address<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<SocketAddr, ConfigError> {
    let port: u16 = vars.number(Key::FunctionsCustomhandlerPort)?;
    let bind = required_text(vars, Key::BindAddr)?;
    bind.text
        .trim()
        .parse::<SocketAddr>()
        .or_else(|_| {
            bind.text
                .trim()
                .parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, port))
        })
        .map_err(|_| {
            ConfigError::new(
                bind.setting,
                format!("{:?} is not an IP address or IP:port", bind.text),
            )
        })
}

/// The container and the path layout (directory, folder template, file-name prefix).
fn lake_layout<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<(String, PathLayout), ConfigError> {
    let container = required_text(vars, Key::StorageContainer)?;
    check_container_name(&container.text).map_err(|p| ConfigError::new(container.setting, p))?;

    let folders = folders(&required_text(vars, Key::StorageDirectory)?)?;

    let file_prefix = match vars.text(Key::StorageFileName)? {
        None => None,
        Some(prefix) if prefix.text.len() > MAX_FILE_PREFIX => {
            return Err(ConfigError::new(
                prefix.setting,
                format!("is longer than {MAX_FILE_PREFIX} characters"),
            ))
        }
        Some(prefix) => Some(
            Segment::literal(&prefix.text)
                .map_err(|problem| ConfigError::new(prefix.setting, problem.to_string()))?,
        ),
    };
    let template = required_text(vars, Key::PathTemplate)?;
    let layout = PathLayout::new(folders, template.text.trim_matches('/'), file_prefix)
        .map_err(|problem| ConfigError::new(template.setting, problem.to_string()))?;
    Ok((container.text, layout))
}

/// A folder path inside the container (`a/b`; leading, trailing and doubled `/` ignored),
/// each folder a literal segment.
fn folders(given: &vars::Given) -> Result<Vec<Segment>, ConfigError> {
    given
        .text
        .trim_matches('/')
        .split('/')
        .filter(|part| !part.is_empty())
        .map(|part| {
            Segment::literal(part).map_err(|problem| {
                ConfigError::new(given.setting, format!("folder {part:?} {problem}"))
            })
        })
        .collect()
}

/// A text setting whose row has a default value, so it always has a value.
fn required_text<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    key: Key,
) -> Result<vars::Given, ConfigError> {
    vars.text(key)?
        .ok_or_else(|| ConfigError::new(key.name(), "is not set and has no default"))
}

/// ADLS filesystem (container) names: 3-63 characters, lower-case letters, digits and
/// single hyphens, starting and ending with a letter or digit.
fn check_container_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let valid_ends = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=63).contains(&name.len()) && valid_chars && valid_ends && !name.contains("--") {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid container name (3-63 lower-case letters, digits and single hyphens)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    pub(super) fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    pub(super) fn error_setting(vars: &[(&str, &str)]) -> String {
        settings(vars).expect_err("should be refused").setting
    }

    #[test]
    fn defaults_run_on_the_local_lake() {
        let s = settings(&[]).expect("defaults are valid");
        assert_eq!(s.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(
            s.storage,
            StorageSettings::LocalLake {
                dir: PathBuf::from("./lake"),
                durable: true
            }
        );
        assert_eq!(s.container, DEFAULT_CONTAINER);
        assert_eq!(s.encoding, Encoding::Relaxed);
        assert_eq!(s.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn port_and_bind_address() {
        let s = settings(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "7071")]).expect("valid");
        assert_eq!(s.listen.port(), 7071);
        let s = settings(&[
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "7071"),
            ("BIND_ADDR", "0.0.0.0"),
        ])
        .expect("valid");
        assert_eq!(s.listen, "0.0.0.0:7071".parse().expect("addr"));
        let s = settings(&[("BIND_ADDR", "[::1]:9000")]).expect("valid");
        assert_eq!(s.listen, "[::1]:9000".parse().expect("addr"));
        assert_eq!(
            error_setting(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "http")]),
            "FUNCTIONS_CUSTOMHANDLER_PORT"
        );
        assert_eq!(error_setting(&[("BIND_ADDR", "localhost")]), "BIND_ADDR");
    }

    #[test]
    fn seed_names_are_accepted() {
        let s = settings(&[
            ("storage_container", "raw-zone"),
            ("storage_directory", "/mongo/movies/"),
        ])
        .expect("valid");
        assert_eq!(s.container, "raw-zone");
        let s2 = settings(&[
            ("STORAGE_CONTAINER", "raw-zone"),
            ("storage_container", "raw-zone"),
        ]);
        assert!(s2.is_ok(), "the same value under both names is fine");
    }

    #[test]
    fn contradictions_and_invalid_values_name_the_setting() {
        assert_eq!(
            error_setting(&[("STORAGE_CONTAINER", "a-b"), ("storage_container", "c-d")]),
            "STORAGE_CONTAINER"
        );
        assert_eq!(
            error_setting(&[("storage_container", "Bad_Name")]),
            "storage_container"
        );
        assert_eq!(
            error_setting(&[("STORAGE_DIRECTORY", "a/../b")]),
            "STORAGE_DIRECTORY"
        );
        assert_eq!(
            error_setting(&[("storage_directory", "has space")]),
            "storage_directory"
        );
        assert_eq!(
            error_setting(&[("storage_file_name", "a/b")]),
            "storage_file_name"
        );
        assert_eq!(
            error_setting(&[("PATH_TEMPLATE", "{db}/{nope}")]),
            "PATH_TEMPLATE"
        );
        assert_eq!(
            error_setting(&[("RECORD_ENCODING", "bson")]),
            "RECORD_ENCODING"
        );
        assert_eq!(error_setting(&[("MAX_BODY_BYTES", "0")]), "MAX_BODY_BYTES");
        assert_eq!(error_setting(&[("LOG_FORMAT", "xml")]), "LOG_FORMAT");
        assert_eq!(
            error_setting(&[("LOCAL_LAKE_FSYNC", "maybe")]),
            "LOCAL_LAKE_FSYNC"
        );
        assert_eq!(
            error_setting(&[("storage_account_key", "k")]),
            "STORAGE_ACCOUNT_NAME"
        );
    }

    /// Every name the parser looks up is a row of the table, and every row the handler
    /// reads (all but the host's own) is looked up: the table is exactly what is read.
    #[test]
    fn the_table_is_exactly_what_is_read() {
        use std::cell::RefCell;
        use std::collections::BTreeSet;
        let asked = RefCell::new(BTreeSet::new());
        let key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
        let runs: [&[(&str, &str)]; 3] = [
            &[],
            &[
                ("STORAGE_ACCOUNT_NAME", "lakeacct"),
                ("STORAGE_ACCOUNT_KEY", key),
            ],
            &[
                ("S3_BUCKET", "lake"),
                ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
            ],
        ];
        for vars in runs {
            Settings::from_lookup(|name| {
                asked.borrow_mut().insert(name.to_owned());
                vars.iter()
                    .find(|(set, _)| *set == name)
                    .map(|(_, value)| value.to_string())
            })
            .expect("valid");
        }
        let table: BTreeSet<String> = SETTINGS
            .iter()
            .filter(|setting| setting.is_read_by_handler())
            .flat_map(Setting::names)
            .map(str::to_owned)
            .collect();
        assert_eq!(asked.into_inner(), table);
        let host_only: Vec<&str> = SETTINGS
            .iter()
            .filter(|setting| !setting.is_read_by_handler())
            .map(|setting| setting.name)
            .collect();
        assert_eq!(host_only, ["COMPACT_SCHEDULE", "MIRROR_SCHEDULE"]);
    }

    /// `local.settings.json.example` sets only settings the handler reads (or the host's
    /// own), and names every one of them (the port only in a comment: the host sets it).
    #[test]
    fn the_example_settings_file_matches_the_table() {
        const HOST_SETTINGS: [&str; 2] = ["FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"];
        let text = include_str!("../../local.settings.json.example");
        let example: serde_json::Value = serde_json::from_str(text).expect("JSON");
        let values = example["Values"].as_object().expect("Values");
        let names: Vec<&str> = setting_names().collect();
        for name in values.keys().filter(|name| !name.starts_with("__comment")) {
            assert!(
                names.contains(&name.as_str()) || HOST_SETTINGS.contains(&name.as_str()),
                "{name} is not a setting the handler reads"
            );
        }
        for setting in SETTINGS {
            assert!(
                setting.names().any(|name| text.contains(name)),
                "{} is missing from local.settings.json.example",
                setting.name
            );
        }
    }

    #[test]
    fn server_limits_default_to_the_tables_values() {
        assert_eq!(
            settings(&[]).expect("valid").limits,
            ServerLimits::default()
        );
        let s = settings(&[
            ("IDLE_TIMEOUT_SECS", "5"),
            ("MAX_INFLIGHT_BYTES", "104857600"),
        ])
        .expect("valid");
        assert_eq!(s.limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(
            error_setting(&[("MAX_INFLIGHT_BYTES", "1000")]),
            "MAX_INFLIGHT_BYTES"
        );
        assert_eq!(error_setting(&[("RUST_LOG", "=[")]), "RUST_LOG");
    }

    #[test]
    fn records_location_is_the_absolute_lake_folder_or_the_adls_url() {
        let lake = tempfile::tempdir().expect("dir");
        let dir = lake.path().display().to_string();
        let s = settings(&[("LOCAL_LAKE_DIR", &dir), ("STORAGE_DIRECTORY", "a/b")]).expect("valid");
        let expected = lake
            .path()
            .canonicalize()
            .expect("exists")
            .join("mongodb/a/b");
        assert_eq!(s.records_location(), expected.display().to_string());
        let relative = settings(&[]).expect("valid").records_location();
        assert!(PathBuf::from(&relative).is_absolute(), "{relative}");
        assert!(relative.ends_with("lake/mongodb/changes"), "{relative}");

        let s = settings(&[
            ("STORAGE_ACCOUNT_NAME", "lakeacct"),
            ("STORAGE_SAS_TOKEN", "sv=1&sig=SECRET"),
        ])
        .expect("valid");
        assert_eq!(
            s.records_location(),
            "https://lakeacct.dfs.core.windows.net/mongodb/changes"
        );
    }

    #[test]
    fn error_messages_are_one_clear_line() {
        let error = settings(&[("RECORD_ENCODING", "bson")]).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "setting RECORD_ENCODING: \"bson\" is neither \"relaxed\" nor \"canonical\""
        );
    }
}
