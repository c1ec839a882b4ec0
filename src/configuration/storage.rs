//! Where records go: the local lake (no account configured), or an ADLS Gen2 account and
//! how to authenticate to it.
//!
//! Credentials come from exactly one source: an account key (what the Python function
//! used), a SAS token, a connection string, or Microsoft Entra ID (`STORAGE_AUTH=identity`:
//! the Function App's managed identity, workload identity, a client secret or the Azure
//! CLI). Two sources at once is a contradiction, none at all an error: start-up stops and
//! names the setting rather than guessing.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;

use super::{parse_bool, parse_number, positive, ConfigError, Vars};

pub const DEFAULT_WRITE_CONCURRENCY: usize = 32;
const MAX_WRITE_CONCURRENCY: usize = 1024;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(60);
/// Azure Functions answers 502 to the caller after 230 s; retries must end well before.
const MAX_RETRY_BUDGET_SECS: u64 = 180;
/// The longest a file may take in the worst case: the budget, then an attempt of up to
/// two request timeouts (see the ADLS sink).
const MAX_REQUEST_SECS: u64 = 220;

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageSettings {
    /// The embedded default: a local directory laid out like the ADLS filesystem.
    LocalLake { dir: PathBuf, durable: bool },
    /// An Azure Data Lake Storage Gen2 account.
    Adls(AdlsSettings),
}

/// An ADLS Gen2 account, its endpoint and how the sink uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdlsSettings {
    pub account: String,
    pub credential: Credential,
    /// The DFS endpoint, always ending in `/` (the client drops the last path segment of
    /// a base URL without one, e.g. the account of a path-style endpoint).
    pub endpoint: String,
    /// Create the filesystem (container) when it is missing instead of failing.
    pub create_filesystem: bool,
    /// Files written at once, process-wide.
    pub write_concurrency: usize,
    /// Longest wait for one storage request.
    pub request_timeout: Duration,
    /// Longest time spent retrying one file before the request fails with 503.
    pub retry_budget: Duration,
}

/// How the sink authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Shared Key with the account key (base64).
    AccountKey(Secret),
    /// A SAS token (query string without the leading `?`).
    Sas(Secret),
    /// Microsoft Entra ID through `azure_identity`'s default credential chain.
    EntraId,
}

impl Credential {
    /// For logs: which kind, never the secret.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::AccountKey(_) => "account key",
            Credential::Sas(_) => "SAS token",
            Credential::EntraId => "Microsoft Entra ID",
        }
    }
}

/// A secret setting: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

const ACCOUNT: (&str, &str) = ("STORAGE_ACCOUNT_NAME", "storage_account_name");
const KEY: (&str, &str) = ("STORAGE_ACCOUNT_KEY", "storage_account_key");
const SAS: (&str, &str) = ("STORAGE_SAS_TOKEN", "storage_sas_token");
const CONNECTION_STRING: (&str, &str) = ("STORAGE_CONNECTION_STRING", "storage_connection_string");

/// Reads the storage settings: the local lake unless an account or credential is set.
pub(super) fn from_vars<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<StorageSettings, ConfigError> {
    let account = vars.aliased(ACCOUNT.0, ACCOUNT.1)?;
    let key = vars.aliased(KEY.0, KEY.1)?;
    let sas = vars.aliased(SAS.0, SAS.1)?;
    let connection_string = vars.aliased(CONNECTION_STRING.0, CONNECTION_STRING.1)?;
    let auth = vars
        .get("STORAGE_AUTH")
        .map(|a| a.trim().to_ascii_lowercase());

    if account.is_none()
        && key.is_none()
        && sas.is_none()
        && connection_string.is_none()
        && auth.is_none()
    {
        return Ok(StorageSettings::LocalLake {
            dir: PathBuf::from(
                vars.get("LOCAL_LAKE_DIR")
                    .unwrap_or_else(|| "./lake".into()),
            ),
            durable: match vars.get("LOCAL_LAKE_FSYNC") {
                Some(text) => parse_bool("LOCAL_LAKE_FSYNC", &text)?,
                None => true,
            },
        });
    }
    for local in ["LOCAL_LAKE_DIR", "LOCAL_LAKE_FSYNC"] {
        if vars.get(local).is_some() {
            return Err(ConfigError::new(
                local,
                "is set, but an ADLS account is configured too (records go to one place); unset one of them",
            ));
        }
    }

    // Every credential source that is set, by the setting that set it.
    let mut sources: Vec<&str> = [&key, &sas, &connection_string]
        .into_iter()
        .filter_map(|source| source.as_ref().map(|(name, _)| *name))
        .collect();
    match auth.as_deref() {
        None => {}
        Some("identity") => sources.push("STORAGE_AUTH"),
        Some(other) => {
            return Err(ConfigError::new(
                "STORAGE_AUTH",
                format!("{other:?} is not supported; the only value is \"identity\" (Microsoft Entra ID); keys, SAS tokens and connection strings are chosen by setting them"),
            ))
        }
    }
    if sources.len() > 1 {
        return Err(ConfigError::new(
            sources[0],
            format!(
                "contradicts {}: set exactly one credential (account key, SAS token, connection string or STORAGE_AUTH=identity)",
                sources[1..].join(" and ")
            ),
        ));
    }

    let endpoint_override = vars.get("STORAGE_DFS_ENDPOINT");
    let (account_setting, mut account, endpoint, credential) = match connection_string {
        Some((setting, text)) => {
            let parsed =
                ConnectionString::parse(&text).map_err(|p| ConfigError::new(setting, p))?;
            let endpoint = match &endpoint_override {
                Some(_) => None,
                None => parsed
                    .dfs_endpoint()
                    .map_err(|p| ConfigError::new(setting, p))?
                    .map(|url| (setting, url)),
            };
            let account = match (account, parsed.account_name()) {
                (Some((name, given)), Some(inside)) if given != inside => {
                    return Err(ConfigError::new(
                        name,
                        format!("is {given:?} but the connection string names account {inside:?}"),
                    ))
                }
                (_, Some(inside)) => inside,
                (Some((_, given)), None) => given,
                (None, None) => {
                    return Err(ConfigError::new(setting, "has no AccountName"));
                }
            };
            let credential = parsed.credential.clone().ok_or_else(|| {
                ConfigError::new(setting, "has neither AccountKey nor SharedAccessSignature")
            })?;
            (setting, account, endpoint, credential)
        }
        None => {
            let Some((account_setting, account)) = account else {
                return Err(ConfigError::new(
                    ACCOUNT.0,
                    "is not set, but a storage credential is: name the ADLS Gen2 account",
                ));
            };
            let credential = match (key, sas) {
                (Some((_, key)), _) => Credential::AccountKey(Secret::new(key.trim())),
                (_, Some((_, sas))) => Credential::Sas(Secret::new(sas.trim().trim_start_matches('?'))),
                (None, None) if auth.is_some() => Credential::EntraId,
                (None, None) => return Err(ConfigError::new(
                    account_setting,
                    "is set but no credential is: set storage_account_key, STORAGE_SAS_TOKEN or STORAGE_CONNECTION_STRING, or STORAGE_AUTH=identity for Microsoft Entra ID (managed identity)",
                )),
            };
            (account_setting, account, None, credential)
        }
    };
    account = account.trim().to_owned();
    check_account_name(&account).map_err(|p| ConfigError::new(account_setting, p))?;
    match &credential {
        Credential::AccountKey(key) => {
            if base64::engine::general_purpose::STANDARD
                .decode(key.expose())
                .map_or(true, |bytes| bytes.is_empty())
            {
                return Err(ConfigError::new(
                    sources[0],
                    "the account key is not valid base64 (copy it from the portal: Access keys)",
                ));
            }
        }
        Credential::Sas(token) => {
            if !token
                .expose()
                .split('&')
                .any(|pair| pair.starts_with("sig="))
            {
                return Err(ConfigError::new(
                    sources[0],
                    "the SAS token has no sig= parameter",
                ));
            }
        }
        Credential::EntraId => {}
    }
    let endpoint = match endpoint_override
        .map(|url| ("STORAGE_DFS_ENDPOINT", url))
        .or(endpoint)
    {
        Some((setting, url)) => {
            normalise_endpoint(&url).map_err(|p| ConfigError::new(setting, p))?
        }
        None => format!("https://{account}.dfs.core.windows.net/"),
    };

    let seconds = |setting: &str, default: Duration| -> Result<Duration, ConfigError> {
        match vars.get(setting) {
            Some(text) => Ok(Duration::from_secs(positive(
                setting,
                parse_number::<usize>(setting, &text)?,
            )? as u64)),
            None => Ok(default),
        }
    };
    let retry_budget = seconds("STORAGE_RETRY_BUDGET_SECS", DEFAULT_RETRY_BUDGET)?;
    if retry_budget.as_secs() > MAX_RETRY_BUDGET_SECS {
        return Err(ConfigError::new(
            "STORAGE_RETRY_BUDGET_SECS",
            format!("must be at most {MAX_RETRY_BUDGET_SECS} (Azure Functions ends HTTP requests after 230 s)"),
        ));
    }
    let request_timeout = seconds("STORAGE_REQUEST_TIMEOUT_SECS", DEFAULT_REQUEST_TIMEOUT)?;
    if retry_budget + 2 * request_timeout > Duration::from_secs(MAX_REQUEST_SECS) {
        return Err(ConfigError::new(
            "STORAGE_RETRY_BUDGET_SECS",
            format!(
                "plus twice STORAGE_REQUEST_TIMEOUT_SECS must be at most {MAX_REQUEST_SECS} s (Azure Functions ends HTTP requests after 230 s)"
            ),
        ));
    }
    let write_concurrency = match vars.get("STORAGE_WRITE_CONCURRENCY") {
        Some(text) => positive(
            "STORAGE_WRITE_CONCURRENCY",
            parse_number::<usize>("STORAGE_WRITE_CONCURRENCY", &text)?,
        )?,
        None => DEFAULT_WRITE_CONCURRENCY,
    };
    if write_concurrency > MAX_WRITE_CONCURRENCY {
        return Err(ConfigError::new(
            "STORAGE_WRITE_CONCURRENCY",
            format!("must be at most {MAX_WRITE_CONCURRENCY}"),
        ));
    }
    Ok(StorageSettings::Adls(AdlsSettings {
        account,
        credential,
        endpoint,
        create_filesystem: match vars.get("STORAGE_CREATE_FILESYSTEM") {
            Some(text) => parse_bool("STORAGE_CREATE_FILESYSTEM", &text)?,
            None => false,
        },
        write_concurrency,
        request_timeout,
        retry_budget,
    }))
}

/// A storage connection string, as the portal shows it under "Access keys".
#[derive(Debug, Default)]
struct ConnectionString {
    account: Option<String>,
    credential: Option<Credential>,
    protocol: Option<String>,
    suffix: Option<String>,
    blob_endpoint: Option<String>,
    dfs_endpoint: Option<String>,
}

/// The DFS endpoint of the development storage (Azurite) would be needed, but Azurite
/// has none.
const NO_DEVELOPMENT_STORAGE: &str = "UseDevelopmentStorage (Azurite) has no DFS endpoint: run `cargo run -p dfs-test-server` and set STORAGE_ACCOUNT_NAME=devstoreaccount1, its key and STORAGE_DFS_ENDPOINT=http://127.0.0.1:10004/devstoreaccount1";

impl ConnectionString {
    /// `Key=Value;...`; keys in any case, values may contain `=` (base64, SAS). Keys
    /// for other services (`QueueEndpoint`, ...) are ignored.
    fn parse(text: &str) -> Result<ConnectionString, String> {
        let mut parsed = ConnectionString::default();
        let mut key = None;
        let mut sas = None;
        for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(format!(
                    "is not a connection string: {:?} is not Key=Value",
                    pair.split_at(pair.len().min(20)).0
                ));
            };
            let value = value.trim().to_owned();
            match name.trim().to_ascii_lowercase().as_str() {
                "accountname" => parsed.account = Some(value),
                "accountkey" => key = Some(value),
                "sharedaccesssignature" => sas = Some(value),
                "defaultendpointsprotocol" => parsed.protocol = Some(value),
                "endpointsuffix" => parsed.suffix = Some(value),
                "blobendpoint" => parsed.blob_endpoint = Some(value),
                "dfsendpoint" => parsed.dfs_endpoint = Some(value),
                "usedevelopmentstorage" => return Err(NO_DEVELOPMENT_STORAGE.into()),
                _ => {}
            }
        }
        parsed.credential = match (key, sas) {
            (Some(_), Some(_)) => {
                return Err("has both AccountKey and SharedAccessSignature; keep one".into())
            }
            (Some(key), None) => Some(Credential::AccountKey(Secret::new(key))),
            (None, Some(sas)) => Some(Credential::Sas(Secret::new(
                sas.trim_start_matches('?').to_owned(),
            ))),
            (None, None) => None,
        };
        Ok(parsed)
    }

    /// The DFS endpoint it implies: `DfsEndpoint`, else `BlobEndpoint` with its `.blob.`
    /// host label turned into `.dfs.`, else built from the account, protocol and suffix.
    /// `None` leaves the default (public cloud, https). A `BlobEndpoint` that is not a
    /// `*.blob.*` host (a custom domain, an emulator) says nothing about the DFS endpoint.
    fn dfs_endpoint(&self) -> Result<Option<String>, String> {
        if let Some(dfs) = &self.dfs_endpoint {
            return Ok(Some(dfs.clone()));
        }
        if let Some(blob) = &self.blob_endpoint {
            return match blob.contains(".blob.") {
                true => Ok(Some(blob.replacen(".blob.", ".dfs.", 1))),
                false => Err(format!(
                    "its BlobEndpoint ({}) is not a *.blob.* host, so the DFS endpoint is unknown: add DfsEndpoint=... or set STORAGE_DFS_ENDPOINT",
                    origin(blob)
                )),
            };
        }
        if self.protocol.is_none() && self.suffix.is_none() {
            return Ok(None);
        }
        let Some(account) = self.account.as_deref() else {
            return Ok(None);
        };
        Ok(Some(format!(
            "{}://{account}.dfs.{}/",
            self.protocol.as_deref().unwrap_or("https"),
            self.suffix.as_deref().unwrap_or("core.windows.net"),
        )))
    }

    /// `AccountName`, else the first host label of the DFS or blob endpoint (the portal's
    /// SAS connection strings carry only endpoints).
    fn account_name(&self) -> Option<String> {
        self.account.clone().or_else(|| {
            let endpoint = self.dfs_endpoint.as_ref().or(self.blob_endpoint.as_ref())?;
            let host = azure_core::Url::parse(endpoint)
                .ok()?
                .host_str()?
                .to_owned();
            let (label, _) = host.split_once('.')?;
            Some(label.to_owned())
        })
    }
}

/// An `http(s)://host[:port][/path]` URL without query or fragment, ending in `/`.
/// Messages show only the URL's origin: a pasted SAS URL must not reach the logs.
fn normalise_endpoint(text: &str) -> Result<String, String> {
    let text = text.trim();
    let url = azure_core::Url::parse(text)
        .map_err(|e| format!("the endpoint ({}) is not a valid URL: {e}", origin(text)))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "the endpoint ({}) is not an http:// or https:// URL with a host",
            origin(text)
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "the endpoint ({}) must not have a query or fragment (a SAS token goes in STORAGE_SAS_TOKEN)",
            origin(text)
        ));
    }
    if text.ends_with('/') {
        Ok(text.to_owned())
    } else {
        Ok(format!("{text}/"))
    }
}

/// `scheme://host[:port]` of a URL-like text, for messages.
fn origin(text: &str) -> String {
    let (scheme, rest) = text.split_once("://").unwrap_or(("", text));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{host}")
}

/// Storage account names: 3-24 lower-case letters and digits.
fn check_account_name(name: &str) -> Result<(), String> {
    if (3..=24).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid storage account name (3-24 lower-case letters and digits)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error_setting, settings};
    use super::*;

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn adls(vars: &[(&str, &str)]) -> AdlsSettings {
        match settings(vars).expect("valid settings").storage {
            StorageSettings::Adls(adls) => adls,
            other => panic!("expected ADLS, got {other:?}"),
        }
    }

    #[test]
    fn the_seed_settings_select_adls_with_the_account_key() {
        let s = adls(&[
            ("storage_account_name", "lakeacct"),
            ("storage_account_key", KEY),
        ]);
        assert_eq!(s.account, "lakeacct");
        assert_eq!(s.credential, Credential::AccountKey(Secret::new(KEY)));
        assert_eq!(s.endpoint, "https://lakeacct.dfs.core.windows.net/");
        assert!(!s.create_filesystem);
        assert_eq!(s.write_concurrency, DEFAULT_WRITE_CONCURRENCY);
        assert_eq!(s.retry_budget, DEFAULT_RETRY_BUDGET);
    }

    #[test]
    fn sas_identity_and_endpoint_override() {
        let s = adls(&[
            ("STORAGE_ACCOUNT_NAME", "lakeacct"),
            ("STORAGE_SAS_TOKEN", "?sv=2022-11-02&ss=b&sig=abc%3D"),
            (
                "STORAGE_DFS_ENDPOINT",
                "http://127.0.0.1:10004/devstoreaccount1",
            ),
        ]);
        assert_eq!(
            s.credential,
            Credential::Sas(Secret::new("sv=2022-11-02&ss=b&sig=abc%3D"))
        );
        assert_eq!(s.endpoint, "http://127.0.0.1:10004/devstoreaccount1/");
        let s = adls(&[
            ("STORAGE_ACCOUNT_NAME", "lakeacct"),
            ("STORAGE_AUTH", "Identity"),
            ("STORAGE_CREATE_FILESYSTEM", "true"),
            ("STORAGE_WRITE_CONCURRENCY", "8"),
        ]);
        assert_eq!(s.credential, Credential::EntraId);
        assert!(s.create_filesystem);
        assert_eq!(s.write_concurrency, 8);
    }

    #[test]
    fn connection_strings_give_account_credential_and_endpoint() {
        let cs = format!(
            "DefaultEndpointsProtocol=https;AccountName=lakeacct;AccountKey={KEY};EndpointSuffix=core.usgovcloudapi.net"
        );
        let s = adls(&[("STORAGE_CONNECTION_STRING", &cs)]);
        assert_eq!(s.account, "lakeacct");
        assert_eq!(s.credential, Credential::AccountKey(Secret::new(KEY)));
        assert_eq!(s.endpoint, "https://lakeacct.dfs.core.usgovcloudapi.net/");

        let cs = "BlobEndpoint=https://lakeacct.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&sig=x%3D;AccountName=lakeacct";
        let s = adls(&[("storage_connection_string", cs)]);
        assert_eq!(
            s.credential,
            Credential::Sas(Secret::new("sv=2022-11-02&sig=x%3D"))
        );
        assert_eq!(s.endpoint, "https://lakeacct.dfs.core.windows.net/");

        // The portal's SAS connection string has endpoints but no AccountName.
        let cs = "BlobEndpoint=https://lakeacct.blob.core.windows.net/;QueueEndpoint=https://lakeacct.queue.core.windows.net/;SharedAccessSignature=sv=2022-11-02&sig=x%3D";
        let s = adls(&[("STORAGE_CONNECTION_STRING", cs)]);
        assert_eq!(s.account, "lakeacct");
        assert_eq!(s.endpoint, "https://lakeacct.dfs.core.windows.net/");
    }

    #[test]
    fn connection_strings_that_cannot_reach_a_dfs_endpoint_are_refused() {
        let azurite = "UseDevelopmentStorage=true";
        let error = settings(&[("STORAGE_CONNECTION_STRING", azurite)]).expect_err("refused");
        assert_eq!(error.setting, "STORAGE_CONNECTION_STRING");
        assert!(error.problem.contains("no DFS endpoint"), "{error}");

        let custom = format!("AccountName=lakeacct;AccountKey={KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(
            error_setting(&[("STORAGE_CONNECTION_STRING", &custom)]),
            "STORAGE_CONNECTION_STRING"
        );
        // ... unless the DFS endpoint is given.
        let s = adls(&[
            ("STORAGE_CONNECTION_STRING", &custom),
            (
                "STORAGE_DFS_ENDPOINT",
                "http://127.0.0.1:10004/devstoreaccount1",
            ),
        ]);
        assert_eq!(s.endpoint, "http://127.0.0.1:10004/devstoreaccount1/");
    }

    #[test]
    fn endpoint_errors_never_echo_a_query() {
        let error = settings(&[
            ("STORAGE_ACCOUNT_NAME", "lakeacct"),
            ("STORAGE_AUTH", "identity"),
            (
                "STORAGE_DFS_ENDPOINT",
                "https://lakeacct.dfs.core.windows.net/?sv=1&sig=SECRET",
            ),
        ])
        .expect_err("refused");
        assert_eq!(error.setting, "STORAGE_DFS_ENDPOINT");
        assert!(!error.to_string().contains("SECRET"), "{error}");
        assert_eq!(
            error_setting(&[
                ("STORAGE_ACCOUNT_NAME", "lakeacct"),
                ("STORAGE_AUTH", "identity"),
                ("STORAGE_DFS_ENDPOINT", "https://h:99999/"),
            ]),
            "STORAGE_DFS_ENDPOINT"
        );
    }

    #[test]
    fn missing_or_contradictory_credentials_stop_start_up() {
        // An account without any credential.
        assert_eq!(
            error_setting(&[("storage_account_name", "lakeacct")]),
            "storage_account_name"
        );
        // Two credentials at once.
        assert_eq!(
            error_setting(&[
                ("storage_account_name", "lakeacct"),
                ("storage_account_key", KEY),
                ("STORAGE_SAS_TOKEN", "sig=x"),
            ]),
            "storage_account_key"
        );
        assert_eq!(
            error_setting(&[
                ("STORAGE_ACCOUNT_NAME", "lakeacct"),
                ("STORAGE_ACCOUNT_KEY", KEY),
                ("STORAGE_AUTH", "identity"),
            ]),
            "STORAGE_ACCOUNT_KEY"
        );
        // A connection string for another account than the one named.
        let cs = format!("AccountName=other;AccountKey={KEY}");
        assert_eq!(
            error_setting(&[
                ("STORAGE_ACCOUNT_NAME", "lakeacct"),
                ("STORAGE_CONNECTION_STRING", &cs),
            ]),
            "STORAGE_ACCOUNT_NAME"
        );
        // Local lake settings beside an account.
        assert_eq!(
            error_setting(&[
                ("STORAGE_ACCOUNT_NAME", "lakeacct"),
                ("STORAGE_AUTH", "identity"),
                ("LOCAL_LAKE_DIR", "/tmp/lake"),
            ]),
            "LOCAL_LAKE_DIR"
        );
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let base = [
            ("STORAGE_ACCOUNT_NAME", "lakeacct"),
            ("STORAGE_AUTH", "identity"),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut vars = base.to_vec();
            vars.push(extra);
            error_setting(&vars)
        };
        assert_eq!(
            with(("STORAGE_DFS_ENDPOINT", "ftp://x")),
            "STORAGE_DFS_ENDPOINT"
        );
        assert_eq!(
            with(("STORAGE_DFS_ENDPOINT", "https://x/?a=b")),
            "STORAGE_DFS_ENDPOINT"
        );
        assert_eq!(
            with(("STORAGE_RETRY_BUDGET_SECS", "600")),
            "STORAGE_RETRY_BUDGET_SECS"
        );
        assert_eq!(
            with(("STORAGE_WRITE_CONCURRENCY", "0")),
            "STORAGE_WRITE_CONCURRENCY"
        );
        assert_eq!(
            with(("STORAGE_CREATE_FILESYSTEM", "perhaps")),
            "STORAGE_CREATE_FILESYSTEM"
        );
        assert_eq!(
            error_setting(&[
                ("STORAGE_ACCOUNT_NAME", "Lake_Acct"),
                ("STORAGE_AUTH", "identity")
            ]),
            "STORAGE_ACCOUNT_NAME"
        );
        assert_eq!(
            error_setting(&[
                ("STORAGE_ACCOUNT_NAME", "lakeacct"),
                ("STORAGE_AUTH", "password")
            ]),
            "STORAGE_AUTH"
        );
        assert_eq!(
            error_setting(&[
                ("STORAGE_ACCOUNT_NAME", "lakeacct"),
                ("STORAGE_ACCOUNT_KEY", "not base64!")
            ]),
            "STORAGE_ACCOUNT_KEY"
        );
        assert_eq!(
            error_setting(&[
                ("STORAGE_ACCOUNT_NAME", "lakeacct"),
                ("STORAGE_SAS_TOKEN", "sv=1&sp=w")
            ]),
            "STORAGE_SAS_TOKEN"
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let s = settings(&[
            ("storage_account_name", "lakeacct"),
            ("storage_account_key", KEY),
        ])
        .expect("valid");
        let printed = format!("{s:?}");
        assert!(!printed.contains(KEY), "{printed}");
        assert!(printed.contains("redacted"));
    }
}
