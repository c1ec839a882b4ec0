//! Where records go: the local lake (no account configured), or an ADLS Gen2 account and
//! how to authenticate to it.
//!
//! Credentials come from exactly one source: an account key (what the Python function
//! used), a SAS token, a connection string, or Microsoft Entra ID (`STORAGE_AUTH=identity`:
//! the Function App's managed identity, system- or user-assigned, workload identity, a
//! client secret or the Azure CLI). Two sources at once is a contradiction, none at all an error: start-up stops and
//! names the setting rather than guessing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use super::connection_string::ConnectionString;
use super::identity::{EntraIdentity, UserAssigned};
use super::s3::S3Settings;
use super::table::{
    Key, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_BUDGET, DEFAULT_WRITE_CONCURRENCY,
    MAX_RETRY_BUDGET_SECS,
};
use super::vars::{Given, Vars};
use super::ConfigError;
use crate::domain::Segment;

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
    /// An S3 bucket (AWS or an S3-compatible store).
    S3(S3Settings),
}

impl StorageSettings {
    /// Where records of `container`/`directory` land, for the start-up line: the absolute
    /// folder of the local lake (symbolic links resolved as far as the folder exists), or
    /// the ADLS endpoint, filesystem and directory. Never a credential.
    pub fn records_location(&self, container: &str, directory: &[Segment]) -> String {
        let folders = std::iter::once(container).chain(directory.iter().map(Segment::as_str));
        match self {
            StorageSettings::LocalLake { dir, .. } => {
                let mut path = dir.clone();
                path.extend(folders);
                canonical(&path).display().to_string()
            }
            StorageSettings::Adls(adls) => {
                let folders: Vec<&str> = folders.collect();
                format!("{}{}", adls.endpoint, folders.join("/"))
            }
            // The bucket takes the container's place.
            StorageSettings::S3(s3) => {
                let mut location = s3.location();
                for folder in directory {
                    location = format!("{location}/{}", folder.as_str());
                }
                location
            }
        }
    }
}

/// `path` made absolute, with its longest existing prefix canonicalised (the rest does
/// not exist yet, so there is no link to resolve in it).
fn canonical(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    loop {
        if let Ok(mut resolved) = existing.canonicalize() {
            resolved.extend(missing.iter().rev());
            return resolved;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => return absolute,
        }
    }
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
    /// How change files are written (`STORAGE_WRITE_PROTOCOL`).
    pub write: WriteProtocol,
}

/// How the sink writes a file (issue #13). Reads, listings, deletes and large spooled
/// files go through the DFS endpoint either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteProtocol {
    /// One conditional Put Blob (`If-None-Match: *`) on the account's Blob endpoint
    /// (`endpoint`, ending in `/`): one request per file.
    Blob { endpoint: String },
    /// Create, append with flush and a rename that never replaces, on the DFS endpoint:
    /// three requests, for networks that reach only the DFS endpoint.
    Dfs,
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
    /// Microsoft Entra ID as a user-assigned managed identity (`AZURE_CLIENT_ID` or
    /// `STORAGE_IDENTITY_OBJECT_ID`), which the default chain cannot select.
    UserAssignedIdentity(UserAssigned),
}

impl Credential {
    /// For logs: which kind, never the secret.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::AccountKey(_) => "account key",
            Credential::Sas(_) => "SAS token",
            Credential::EntraId => "Microsoft Entra ID",
            Credential::UserAssignedIdentity(_) => {
                "Microsoft Entra ID, user-assigned managed identity"
            }
        }
    }

    /// The Entra ID credential for `identity`.
    pub fn entra(identity: &EntraIdentity) -> Credential {
        match identity {
            EntraIdentity::DefaultChain => Credential::EntraId,
            EntraIdentity::UserAssigned(id) => Credential::UserAssignedIdentity(id.clone()),
        }
    }

    /// Whether requests carry an Entra ID bearer token.
    pub fn is_entra(&self) -> bool {
        matches!(
            self,
            Credential::EntraId | Credential::UserAssignedIdentity(_)
        )
    }
}

impl AdlsSettings {
    /// Settings for a DFS endpoint reached with an Entra ID bearer token and the table's
    /// defaults for timeouts, budget and concurrency (all fields can be changed after):
    /// OneLake's landing zone (`https://onelake.dfs.fabric.microsoft.com/`), or any ADLS
    /// Gen2 account. `setting` names the setting `endpoint` came from, for the error.
    pub fn entra(
        setting: &str,
        endpoint: &str,
        identity: &EntraIdentity,
    ) -> Result<AdlsSettings, ConfigError> {
        let endpoint = normalise_endpoint(endpoint).map_err(|p| ConfigError::new(setting, p))?;
        Ok(AdlsSettings {
            account: endpoint_account(&endpoint),
            credential: Credential::entra(identity),
            endpoint,
            create_filesystem: false,
            write_concurrency: DEFAULT_WRITE_CONCURRENCY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry_budget: DEFAULT_RETRY_BUDGET,
            // OneLake's landing zone and other bearer-token targets: DFS semantics.
            write: WriteProtocol::Dfs,
        })
    }
}

/// The account an endpoint names, for logs (a bearer token does not sign it): the last
/// folder of a path-style endpoint (`http://127.0.0.1:10004/devstoreaccount1/`), else the
/// host's first label (`onelake`, `<account>`).
fn endpoint_account(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let mut parts = rest.trim_end_matches('/').split('/');
    let host = parts.next().unwrap_or_default();
    match parts.next_back() {
        Some(folder) => folder.to_owned(),
        None => host.split(['.', ':']).next().unwrap_or_default().to_owned(),
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

/// Reads the storage settings: the local lake unless an account or credential is set.
pub(super) fn from_vars<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    entra: &EntraIdentity,
) -> Result<StorageSettings, ConfigError> {
    let account = vars.given(Key::StorageAccountName)?;
    let key = vars.given(Key::StorageAccountKey)?;
    let sas = vars.given(Key::StorageSasToken)?;
    let connection_string = vars.given(Key::StorageConnectionString)?;
    let identity = vars.choice(Key::StorageAuth)?.is_some();
    let kind = vars.choice(Key::StorageKind)?;
    let azure_set = [&account, &key, &sas, &connection_string]
        .into_iter()
        .find_map(|given| given.as_ref().map(|given| given.setting))
        .or(identity.then(|| Key::StorageAuth.name()));

    if let Some(s3) = super::s3::from_vars(vars, limits(vars)?)? {
        return only_s3(vars, kind, azure_set).map(|()| StorageSettings::S3(s3));
    }
    match (kind, azure_set) {
        (Some("s3"), _) => {
            return Err(ConfigError::new(
                Key::S3Bucket.name(),
                "is not set, but STORAGE_KIND=s3: name the bucket",
            ))
        }
        (Some("adls"), None) => {
            return Err(ConfigError::new(
                Key::StorageAccountName.name(),
                "is not set, but STORAGE_KIND=adls: name the account and its credential",
            ))
        }
        (Some("local"), Some(setting)) => {
            return Err(ConfigError::new(
                setting,
                "is set, but STORAGE_KIND=local (records go to one place); unset one of them",
            ))
        }
        _ => {}
    }

    if azure_set.is_none() {
        let dir = vars.text(Key::LocalLakeDir)?.map(|given| given.text);
        return Ok(StorageSettings::LocalLake {
            dir: PathBuf::from(dir.unwrap_or_default()),
            durable: vars.flag(Key::LocalLakeFsync)?,
        });
    }
    for local in [Key::LocalLakeDir, Key::LocalLakeFsync] {
        if vars.is_set(local)? {
            return Err(ConfigError::new(
                local.name(),
                "is set, but an ADLS account is configured too (records go to one place); unset one of them",
            ));
        }
    }

    // Every credential source that is set, by the setting that set it.
    let mut sources: Vec<&str> = [&key, &sas, &connection_string]
        .into_iter()
        .filter_map(|source| source.as_ref().map(|given| given.setting))
        .collect();
    if identity {
        sources.push(Key::StorageAuth.name());
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

    let endpoint_override = vars.text(Key::StorageDfsEndpoint)?;
    let (account, endpoint, credential, cs_blob_endpoint) = match connection_string {
        Some(given) => from_connection_string(given, account, endpoint_override.is_some())?,
        None => {
            let Some(account) = account else {
                return Err(ConfigError::new(
                    Key::StorageAccountName.name(),
                    "is not set, but a storage credential is: name the ADLS Gen2 account",
                ));
            };
            let credential = match (key, sas) {
                (Some(key), _) => Credential::AccountKey(Secret::new(key.text.trim())),
                (_, Some(sas)) => Credential::Sas(Secret::new(sas.text.trim().trim_start_matches('?'))),
                (None, None) if identity => Credential::entra(entra),
                (None, None) => return Err(ConfigError::new(
                    account.setting,
                    "is set but no credential is: set storage_account_key, STORAGE_SAS_TOKEN or STORAGE_CONNECTION_STRING, or STORAGE_AUTH=identity for Microsoft Entra ID (managed identity)",
                )),
            };
            (account, None, credential, None)
        }
    };
    let account_name = account.text.trim().to_owned();
    check_account_name(&account_name).map_err(|p| ConfigError::new(account.setting, p))?;
    check_credential(&credential, sources[0])?;
    let endpoint = match endpoint_override.or(endpoint) {
        Some(given) => {
            normalise_endpoint(&given.text).map_err(|p| ConfigError::new(given.setting, p))?
        }
        None => format!("https://{account_name}.dfs.core.windows.net/"),
    };
    let write = write_protocol(vars, &endpoint, cs_blob_endpoint)?;

    let (write_concurrency, request_timeout, retry_budget) = limits(vars)?;
    Ok(StorageSettings::Adls(AdlsSettings {
        account: account_name,
        credential,
        endpoint,
        create_filesystem: vars.flag(Key::StorageCreateFilesystem)?,
        write_concurrency,
        request_timeout,
        retry_budget,
        write,
    }))
}

/// The limits every network store shares: files written at once, the request timeout and
/// the retry budget, checked together against the Functions host's request limit.
fn limits<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<(usize, Duration, Duration), ConfigError> {
    let retry_budget = vars.seconds(Key::StorageRetryBudgetSecs)?;
    let request_timeout = vars.seconds(Key::StorageRequestTimeoutSecs)?;
    if retry_budget + 2 * request_timeout > Duration::from_secs(MAX_REQUEST_SECS) {
        return Err(ConfigError::new(
            Key::StorageRetryBudgetSecs.name(),
            format!(
                "plus twice STORAGE_REQUEST_TIMEOUT_SECS must be at most {MAX_REQUEST_SECS} s (Azure Functions ends HTTP requests after 230 s; the budget alone at most {MAX_RETRY_BUDGET_SECS})"
            ),
        ));
    }
    let write_concurrency = vars.number(Key::StorageWriteConcurrency)?;
    Ok((write_concurrency, request_timeout, retry_budget))
}

/// With `S3_BUCKET` set: refuses settings of the other stores, and a `STORAGE_KIND`
/// that says otherwise (records go to one place).
fn only_s3<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    kind: Option<&str>,
    azure_set: Option<&'static str>,
) -> Result<(), ConfigError> {
    if let Some(other) = kind.filter(|kind| *kind != "s3") {
        return Err(ConfigError::new(
            Key::StorageKind.name(),
            format!(
                "is {other}, but S3_BUCKET is set (records go to one place); unset one of them"
            ),
        ));
    }
    let local = [Key::LocalLakeDir, Key::LocalLakeFsync]
        .into_iter()
        .find_map(|key| {
            vars.is_set(key)
                .map(|set| set.then(|| key.name()))
                .transpose()
        })
        .transpose()?;
    match azure_set.or(local) {
        Some(setting) => Err(ConfigError::new(
            setting,
            "is set, but S3_BUCKET is too (records go to one place); unset one of them",
        )),
        None => Ok(()),
    }
}

/// `STORAGE_WRITE_PROTOCOL`, and for `blob` the Blob endpoint: `STORAGE_BLOB_ENDPOINT`,
/// else the connection string's `BlobEndpoint`, else the DFS endpoint with its `.dfs.`
/// host label as `.blob.`. A DFS endpoint of another shape (a custom domain, a local
/// server) says nothing about the Blob endpoint: start-up stops and names the settings.
fn write_protocol<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    dfs_endpoint: &str,
    from_connection_string: Option<Given>,
) -> Result<WriteProtocol, ConfigError> {
    let given = vars
        .text(Key::StorageBlobEndpoint)?
        .or(from_connection_string);
    if vars.choice(Key::StorageWriteProtocol)? == Some("dfs") {
        return Ok(WriteProtocol::Dfs);
    }
    let endpoint = match given {
        Some(given) => {
            normalise_endpoint(&given.text).map_err(|p| ConfigError::new(given.setting, p))?
        }
        None if origin(dfs_endpoint).contains(".dfs.") => dfs_endpoint.replacen(".dfs.", ".blob.", 1),
        None => {
            return Err(ConfigError::new(
                Key::StorageBlobEndpoint.name(),
                format!(
                    "is not set, and the DFS endpoint ({}) is not a *.dfs.* host, so the Blob endpoint for STORAGE_WRITE_PROTOCOL=blob (the default) is unknown: set STORAGE_BLOB_ENDPOINT to the account's Blob endpoint, or STORAGE_WRITE_PROTOCOL=dfs",
                    origin(dfs_endpoint)
                ),
            ))
        }
    };
    Ok(WriteProtocol::Blob { endpoint })
}

/// The account, the endpoint it implies (unless `STORAGE_DFS_ENDPOINT` overrides it) and
/// the credential of a connection string, checked against `STORAGE_ACCOUNT_NAME` if set.
fn from_connection_string(
    given: Given,
    account: Option<Given>,
    endpoint_overridden: bool,
) -> Result<(Given, Option<Given>, Credential, Option<Given>), ConfigError> {
    let setting = given.setting;
    let refused = |problem: String| ConfigError::new(setting, problem);
    let parsed = ConnectionString::parse(&given.text).map_err(|e| refused(e.to_string()))?;
    let endpoint = match endpoint_overridden {
        true => None,
        false => parsed
            .dfs_endpoint()
            .map_err(|e| refused(e.to_string()))?
            .map(|text| Given { setting, text }),
    };
    let account = match (account, parsed.account_name()) {
        (Some(named), Some(inside)) if named.text != inside => {
            return Err(ConfigError::new(
                named.setting,
                format!(
                    "is {:?} but the connection string names account {inside:?}",
                    named.text
                ),
            ))
        }
        (_, Some(inside)) => Given {
            setting,
            text: inside,
        },
        (Some(named), None) => named,
        (None, None) => return Err(refused("has no AccountName".into())),
    };
    let blob_endpoint = parsed.blob_endpoint().map(|text| Given {
        setting,
        text: text.to_owned(),
    });
    let credential = parsed
        .credential
        .ok_or_else(|| refused("has neither AccountKey nor SharedAccessSignature".into()))?;
    Ok((account, endpoint, credential, blob_endpoint))
}

/// Catches a mangled key or SAS at start-up rather than at the first write.
fn check_credential(credential: &Credential, setting: &str) -> Result<(), ConfigError> {
    match credential {
        Credential::AccountKey(key) => {
            if base64::engine::general_purpose::STANDARD
                .decode(key.expose())
                .map_or(true, |bytes| bytes.is_empty())
            {
                return Err(ConfigError::new(
                    setting,
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
                    setting,
                    "the SAS token has no sig= parameter",
                ));
            }
        }
        Credential::EntraId | Credential::UserAssignedIdentity(_) => {}
    }
    Ok(())
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
pub(super) fn origin(text: &str) -> String {
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
    use crate::configuration::{DEFAULT_RETRY_BUDGET, DEFAULT_WRITE_CONCURRENCY};

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
            (
                "STORAGE_BLOB_ENDPOINT",
                "http://127.0.0.1:10000/devstoreaccount1",
            ),
        ]);
        assert_eq!(
            s.credential,
            Credential::Sas(Secret::new("sv=2022-11-02&ss=b&sig=abc%3D"))
        );
        assert_eq!(s.endpoint, "http://127.0.0.1:10004/devstoreaccount1/");
        assert_eq!(
            s.write,
            WriteProtocol::Blob {
                endpoint: "http://127.0.0.1:10000/devstoreaccount1/".into()
            }
        );
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
    fn files_go_through_the_blob_endpoint_unless_dfs_is_chosen() {
        let key = [
            ("STORAGE_ACCOUNT_NAME", "lakeacct"),
            ("STORAGE_ACCOUNT_KEY", KEY),
        ];
        let blob = |endpoint: &str| WriteProtocol::Blob {
            endpoint: endpoint.into(),
        };
        assert_eq!(
            adls(&key).write,
            blob("https://lakeacct.blob.core.windows.net/")
        );
        let sovereign = [
            &key[..],
            &[(
                "STORAGE_DFS_ENDPOINT",
                "https://lakeacct.dfs.core.chinacloudapi.cn",
            )],
        ]
        .concat();
        assert_eq!(
            adls(&sovereign).write,
            blob("https://lakeacct.blob.core.chinacloudapi.cn/")
        );
        let azurite = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;";
        let s = adls(&[
            ("STORAGE_CONNECTION_STRING", azurite),
            (
                "STORAGE_DFS_ENDPOINT",
                "http://127.0.0.1:10004/devstoreaccount1",
            ),
        ]);
        assert_eq!(s.write, blob("http://127.0.0.1:10000/devstoreaccount1/"));
        let local = [
            &key[..],
            &[("STORAGE_DFS_ENDPOINT", "http://127.0.0.1:10004/lakeacct")],
        ]
        .concat();
        assert_eq!(
            error_setting(&local),
            "STORAGE_BLOB_ENDPOINT",
            "a local DFS endpoint says nothing about the Blob endpoint"
        );
        let dfs = [&local[..], &[("STORAGE_WRITE_PROTOCOL", "DFS")]].concat();
        assert_eq!(adls(&dfs).write, WriteProtocol::Dfs);
        let wrong = [&key[..], &[("STORAGE_WRITE_PROTOCOL", "s3")]].concat();
        assert_eq!(error_setting(&wrong), "STORAGE_WRITE_PROTOCOL");
    }

    #[test]
    fn identity_with_a_client_id_is_the_user_assigned_identity() {
        let client = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
        let s = adls(&[
            ("STORAGE_ACCOUNT_NAME", "lakeacct"),
            ("STORAGE_AUTH", "identity"),
            ("AZURE_CLIENT_ID", client),
        ]);
        assert_eq!(
            s.credential,
            Credential::UserAssignedIdentity(UserAssigned::ClientId(client.into()))
        );
        // A client id beside a key is not used for storage (the landing zone may use it).
        let s = adls(&[
            ("STORAGE_ACCOUNT_NAME", "lakeacct"),
            ("STORAGE_ACCOUNT_KEY", KEY),
            ("AZURE_CLIENT_ID", client),
        ]);
        assert_eq!(s.credential, Credential::AccountKey(Secret::new(KEY)));
    }

    #[test]
    fn entra_settings_reach_onelake_or_any_dfs_endpoint() {
        let identity = EntraIdentity::DefaultChain;
        let s = AdlsSettings::entra(
            "MIRROR_LANDING_ZONE",
            "https://onelake.dfs.fabric.microsoft.com",
            &identity,
        )
        .expect("valid");
        assert_eq!(s.endpoint, "https://onelake.dfs.fabric.microsoft.com/");
        assert_eq!(s.account, "onelake");
        assert_eq!(s.credential, Credential::EntraId);
        assert_eq!(s.retry_budget, DEFAULT_RETRY_BUDGET);
        let s = AdlsSettings::entra(
            "MIRROR_LANDING_ZONE",
            "http://127.0.0.1:10004/devstoreaccount1",
            &identity,
        )
        .expect("valid");
        assert_eq!(s.account, "devstoreaccount1");
        let error = AdlsSettings::entra("MIRROR_LANDING_ZONE", "https://x/?sig=SECRET", &identity)
            .expect_err("a query is refused");
        assert_eq!(error.setting, "MIRROR_LANDING_ZONE");
        assert!(!error.problem.contains("SECRET"), "{error}");
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
