//! Settings from environment variables (Azure app settings arrive as environment
//! variables). Read once at start-up; anything invalid or contradictory stops start-up
//! with one message that names the setting.
//!
//! The Python function's lower-case names (`storage_container`, ...) are accepted beside
//! the upper-case `STORAGE_*` ones so its users can switch without renaming settings.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::domain::{Encoding, PathLayout, Segment, DEFAULT_TEMPLATE};

mod signing;
mod storage;

pub use signing::SigningSettings;
pub use storage::{AdlsSettings, Credential, Secret, StorageSettings};

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_CONTAINER: &str = "mongodb";
pub const DEFAULT_DIRECTORY: &str = "changes";
/// The Azure Functions HTTP request limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 100 * 1024 * 1024;
const MAX_FILE_PREFIX: usize = 64;
/// Request body bytes being handled at once, all requests together (`MAX_INFLIGHT_BYTES`):
/// see the README's "Memory" section for how it was chosen.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 128 * 1024 * 1024;

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

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            max_connections: 512,
            shutdown_timeout: Duration::from_secs(25),
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
    /// The ADLS filesystem (container); locally, the first folder under the lake dir.
    pub container: String,
    pub layout: PathLayout,
    pub encoding: Encoding,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    /// Request signatures (`INGEST_HMAC_SECRET`); `None` accepts unsigned requests.
    pub signing: Option<SigningSettings>,
    pub limits: ServerLimits,
}

impl Settings {
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    /// Empty values count as unset, as an empty Azure app setting is.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let vars = Vars(lookup);

        let port = match vars.get("FUNCTIONS_CUSTOMHANDLER_PORT") {
            Some(text) => parse_number::<u16>("FUNCTIONS_CUSTOMHANDLER_PORT", &text)?,
            None => DEFAULT_PORT,
        };
        let listen = match vars.get("BIND_ADDR") {
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            Some(text) => text
                .parse::<SocketAddr>()
                .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, port)))
                .map_err(|_| {
                    ConfigError::new(
                        "BIND_ADDR",
                        format!("{text:?} is not an IP address or IP:port"),
                    )
                })?,
        };

        let storage = storage::from_vars(&vars)?;
        let signing = signing::from_vars(&vars)?;

        let (container_setting, container) = vars
            .aliased("STORAGE_CONTAINER", "storage_container")?
            .unwrap_or(("STORAGE_CONTAINER", DEFAULT_CONTAINER.to_owned()));
        check_container_name(&container).map_err(|p| ConfigError::new(container_setting, p))?;

        let (directory_setting, directory) = vars
            .aliased("STORAGE_DIRECTORY", "storage_directory")?
            .unwrap_or(("STORAGE_DIRECTORY", DEFAULT_DIRECTORY.to_owned()));
        let directory = directory
            .trim_matches('/')
            .split('/')
            .filter(|part| !part.is_empty())
            .map(|part| {
                Segment::literal(part).map_err(|problem| {
                    ConfigError::new(directory_setting, format!("folder {part:?} {problem}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let file_prefix = match vars.aliased("STORAGE_FILE_NAME", "storage_file_name")? {
            None => None,
            Some((setting, prefix)) if prefix.len() > MAX_FILE_PREFIX => {
                return Err(ConfigError::new(
                    setting,
                    format!("is longer than {MAX_FILE_PREFIX} characters"),
                ))
            }
            Some((setting, prefix)) => Some(
                Segment::literal(&prefix)
                    .map_err(|problem| ConfigError::new(setting, problem.to_string()))?,
            ),
        };
        let template = vars
            .get("PATH_TEMPLATE")
            .unwrap_or_else(|| DEFAULT_TEMPLATE.to_owned());
        let layout = PathLayout::new(directory, template.trim_matches('/'), file_prefix)
            .map_err(|problem| ConfigError::new("PATH_TEMPLATE", problem.to_string()))?;

        let encoding = match vars
            .get("RECORD_ENCODING")
            .as_deref()
            .map(str::to_ascii_lowercase)
        {
            None => Encoding::Relaxed,
            Some(text) if text == "relaxed" => Encoding::Relaxed,
            Some(text) if text == "canonical" => Encoding::Canonical,
            Some(text) => {
                return Err(ConfigError::new(
                    "RECORD_ENCODING",
                    format!("{text:?} is neither \"relaxed\" nor \"canonical\""),
                ))
            }
        };
        let max_body_bytes = match vars.get("MAX_BODY_BYTES") {
            Some(text) => positive(
                "MAX_BODY_BYTES",
                parse_number::<usize>("MAX_BODY_BYTES", &text)?,
            )?,
            None => DEFAULT_MAX_BODY_BYTES,
        };
        let log_format = match vars
            .get("LOG_FORMAT")
            .as_deref()
            .map(str::to_ascii_lowercase)
        {
            None => LogFormat::Text,
            Some(text) if text == "text" => LogFormat::Text,
            Some(text) if text == "json" => LogFormat::Json,
            Some(text) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("{text:?} is neither \"text\" nor \"json\""),
                ))
            }
        };

        let defaults = ServerLimits::default();
        let seconds = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            match vars.get(name) {
                Some(text) => Ok(Duration::from_secs(positive(
                    name,
                    parse_number::<usize>(name, &text)?,
                )? as u64)),
                None => Ok(default),
            }
        };
        let count = |name: &str, default: usize| -> Result<usize, ConfigError> {
            match vars.get(name) {
                Some(text) => positive(name, parse_number::<usize>(name, &text)?),
                None => Ok(default),
            }
        };
        let limits = ServerLimits {
            header_read_timeout: seconds("HEADER_READ_TIMEOUT_SECS", defaults.header_read_timeout)?,
            body_read_timeout: seconds("BODY_READ_TIMEOUT_SECS", defaults.body_read_timeout)?,
            idle_timeout: seconds("IDLE_TIMEOUT_SECS", defaults.idle_timeout)?,
            max_connections: count("MAX_CONNECTIONS", defaults.max_connections)?,
            shutdown_timeout: seconds("SHUTDOWN_TIMEOUT_SECS", defaults.shutdown_timeout)?,
            max_inflight_bytes: count("MAX_INFLIGHT_BYTES", defaults.max_inflight_bytes)?,
        };
        if limits.max_inflight_bytes < max_body_bytes {
            return Err(ConfigError::new(
                "MAX_INFLIGHT_BYTES",
                format!("is smaller than MAX_BODY_BYTES ({max_body_bytes}): the largest request could never run"),
            ));
        }

        Ok(Settings {
            listen,
            storage,
            container,
            layout,
            encoding,
            max_body_bytes,
            log_format,
            signing,
            limits,
        })
    }
}

/// Looks settings up, treating empty values as unset.
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    /// A setting known under two names; returns the name that was used with the value.
    /// Both set to different values is a contradiction, not a silent preference.
    fn aliased<'n>(
        &self,
        upper: &'n str,
        lower: &'n str,
    ) -> Result<Option<(&'n str, String)>, ConfigError> {
        match (self.get(upper), self.get(lower)) {
            (Some(a), Some(b)) if a != b => Err(ConfigError::new(
                upper,
                format!("{upper} and {lower} are both set, to different values; keep one"),
            )),
            (Some(value), _) => Ok(Some((upper, value))),
            (None, Some(value)) => Ok(Some((lower, value))),
            (None, None) => Ok(None),
        }
    }
}

fn parse_number<T: std::str::FromStr>(setting: &str, text: &str) -> Result<T, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| ConfigError::new(setting, format!("{text:?} is not a valid number")))
}

fn positive(setting: &str, value: usize) -> Result<usize, ConfigError> {
    if value == 0 {
        Err(ConfigError::new(setting, "must be at least 1"))
    } else {
        Ok(value)
    }
}

fn parse_bool(setting: &str, text: &str) -> Result<bool, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::new(
            setting,
            format!("{text:?} is neither true nor false"),
        )),
    }
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

    #[test]
    fn error_messages_are_one_clear_line() {
        let error = settings(&[("RECORD_ENCODING", "bson")]).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "setting RECORD_ENCODING: \"bson\" is neither \"relaxed\" nor \"canonical\""
        );
    }
}
