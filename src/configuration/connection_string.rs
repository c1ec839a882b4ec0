//! Storage connection strings, as the portal shows them under "Access keys" or makes them
//! for a SAS: `Key=Value;...`, read for the account, the credential and the DFS endpoint.

use super::storage::origin;
use super::{Credential, Secret};

/// A connection string that cannot be used, and why (shown after the setting's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    #[error("is not a connection string: {start:?} is not Key=Value")]
    NotKeyValue { start: String },
    #[error("UseDevelopmentStorage (Azurite) has no DFS endpoint: run `cargo run -p dfs-test-server` and set STORAGE_ACCOUNT_NAME=devstoreaccount1, its key and STORAGE_DFS_ENDPOINT=http://127.0.0.1:10004/devstoreaccount1")]
    DevelopmentStorage,
    #[error("has both AccountKey and SharedAccessSignature; keep one")]
    TwoCredentials,
    #[error("its BlobEndpoint ({origin}) is not a *.blob.* host, so the DFS endpoint is unknown: add DfsEndpoint=... or set STORAGE_DFS_ENDPOINT")]
    UnknownDfsEndpoint { origin: String },
}

/// The parts of a connection string the handler uses.
#[derive(Debug, Default)]
pub(super) struct ConnectionString {
    account: Option<String>,
    pub credential: Option<Credential>,
    protocol: Option<String>,
    suffix: Option<String>,
    blob_endpoint: Option<String>,
    dfs_endpoint: Option<String>,
}

impl ConnectionString {
    /// Keys in any case; values may contain `=` (base64, SAS). Keys for other services
    /// (`QueueEndpoint`, ...) are ignored.
    pub fn parse(text: &str) -> Result<ConnectionString, ConnectionStringError> {
        let mut parsed = ConnectionString::default();
        let mut key = None;
        let mut sas = None;
        for pair in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(ConnectionStringError::NotKeyValue {
                    start: pair.chars().take(20).collect(),
                });
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
                "usedevelopmentstorage" => return Err(ConnectionStringError::DevelopmentStorage),
                _ => {}
            }
        }
        parsed.credential = match (key, sas) {
            (Some(_), Some(_)) => return Err(ConnectionStringError::TwoCredentials),
            (Some(key), None) => Some(Credential::AccountKey(Secret::new(key))),
            (None, Some(sas)) => Some(Credential::Sas(Secret::new(sas.trim_start_matches('?')))),
            (None, None) => None,
        };
        Ok(parsed)
    }

    /// The DFS endpoint it implies: `DfsEndpoint`, else `BlobEndpoint` with its `.blob.`
    /// host label turned into `.dfs.`, else built from the account, protocol and suffix.
    /// `None` leaves the default (public cloud, https). A `BlobEndpoint` that is not a
    /// `*.blob.*` host (a custom domain, an emulator) says nothing about the DFS endpoint.
    pub fn dfs_endpoint(&self) -> Result<Option<String>, ConnectionStringError> {
        if let Some(dfs) = &self.dfs_endpoint {
            return Ok(Some(dfs.clone()));
        }
        if let Some(blob) = &self.blob_endpoint {
            return match blob.contains(".blob.") {
                true => Ok(Some(blob.replacen(".blob.", ".dfs.", 1))),
                false => Err(ConnectionStringError::UnknownDfsEndpoint {
                    origin: origin(blob),
                }),
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

    /// `BlobEndpoint` as given, if it is: where the blob write protocol puts files when no
    /// `STORAGE_BLOB_ENDPOINT` says otherwise.
    pub fn blob_endpoint(&self) -> Option<&str> {
        self.blob_endpoint.as_deref()
    }

    /// `AccountName`, else the first host label of the DFS or blob endpoint (the portal's
    /// SAS connection strings carry only endpoints).
    pub fn account_name(&self) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ConnectionString {
        ConnectionString::parse(text).expect("parses")
    }

    #[test]
    fn keys_in_any_case_and_values_holding_equals_signs() {
        let cs = parse(" accountname = lakeacct ; ACCOUNTKEY=a2V5==;QueueEndpoint=https://x/;");
        assert_eq!(cs.account_name().as_deref(), Some("lakeacct"));
        assert_eq!(
            cs.credential,
            Some(Credential::AccountKey(Secret::new("a2V5==")))
        );
        assert_eq!(cs.dfs_endpoint(), Ok(None), "the public cloud by default");
    }

    #[test]
    fn the_dfs_endpoint_comes_from_dfs_blob_or_suffix() {
        let cs = parse(
            "AccountName=a;DfsEndpoint=https://a.dfs.example/;BlobEndpoint=https://a.blob.x/",
        );
        assert_eq!(cs.dfs_endpoint(), Ok(Some("https://a.dfs.example/".into())));
        let cs = parse("BlobEndpoint=https://lakeacct.blob.core.windows.net/;SharedAccessSignature=?sv=1&sig=x");
        assert_eq!(
            cs.dfs_endpoint(),
            Ok(Some("https://lakeacct.dfs.core.windows.net/".into()))
        );
        assert_eq!(cs.account_name().as_deref(), Some("lakeacct"));
        assert_eq!(
            cs.credential,
            Some(Credential::Sas(Secret::new("sv=1&sig=x")))
        );
        let cs = parse(
            "AccountName=a;DefaultEndpointsProtocol=http;EndpointSuffix=core.chinacloudapi.cn",
        );
        assert_eq!(
            cs.dfs_endpoint(),
            Ok(Some("http://a.dfs.core.chinacloudapi.cn/".into()))
        );
    }

    #[test]
    fn unusable_strings_say_why_without_the_secret() {
        assert_eq!(
            ConnectionString::parse("UseDevelopmentStorage=true").err(),
            Some(ConnectionStringError::DevelopmentStorage)
        );
        assert_eq!(
            ConnectionString::parse("AccountKey=k;SharedAccessSignature=sig=s").err(),
            Some(ConnectionStringError::TwoCredentials)
        );
        let custom = parse("BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1?sig=SECRET");
        let error = custom.dfs_endpoint().expect_err("unknown DFS endpoint");
        assert!(!error.to_string().contains("SECRET"), "{error}");
        // A pasted key without `Key=`: cut at 20 characters, on a character boundary.
        let error =
            ConnectionString::parse("ééééééééééééééééééééééééé").expect_err("not Key=Value");
        assert_eq!(
            error,
            ConnectionStringError::NotKeyValue {
                start: "é".repeat(20)
            }
        );
    }
}
