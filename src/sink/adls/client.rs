//! The one ADLS client of the process: a pooled HTTP client with timeouts, the account's
//! credentials, and none of the client library's own retries (see `retry`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::TokenCredential;
use azure_core::headers;
use azure_core::prelude::{ContentLength, ContentType};
use azure_core::{
    Context, HttpClient, Method, Policy, PolicyResult, Request, RetryOptions, TransportOptions,
};
use azure_identity::{DefaultAzureCredentialBuilder, TokenCredentialOptions};
use azure_storage::headers::RENAME_SOURCE;
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_datalake::clients::{
    DataLakeClientBuilder, FileClient, FileSystemClient, PathClient,
};
use bytes::Bytes;

use super::identity_bridge::UserAssignedCredential;
use crate::configuration::{AdlsSettings, Credential, EntraIdentity, DEFAULT_REQUEST_TIMEOUT};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Below the 4-minute idle timeout of Azure's load balancers, so a pooled connection is
/// never one the other side has silently dropped.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot use the configured credential: {0}")]
    Credential(azure_core::Error),
}

/// The process's one HTTP client: pooled, with timeouts (the library's default has
/// neither). Token requests for Entra ID go through it too.
pub fn http_client(settings: &AdlsSettings) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(settings.request_timeout)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(settings.write_concurrency)
        .tcp_nodelay(true)
        .build()?)
}

/// The credentials the settings name.
pub fn credentials(settings: &AdlsSettings) -> Result<StorageCredentials, ClientError> {
    Ok(match &settings.credential {
        Credential::AccountKey(key) => {
            StorageCredentials::access_key(settings.account.clone(), key.expose().to_owned())
        }
        Credential::Sas(token) => {
            StorageCredentials::sas_token(token.expose()).map_err(ClientError::Credential)?
        }
        Credential::EntraId => {
            StorageCredentials::token_credential(identity_credential(&EntraIdentity::DefaultChain)?)
        }
        Credential::UserAssignedIdentity(id) => StorageCredentials::token_credential(
            identity_credential(&EntraIdentity::UserAssigned(id.clone()))?,
        ),
    })
}

/// A bearer-token credential for `identity`, for any DFS target: the change-file sink
/// (`STORAGE_AUTH=identity`) or the mirror's landing zone (OneLake takes Entra ID only).
/// A user-assigned identity goes through `azure_identity` 1.x (see `identity_bridge`);
/// otherwise `azure_identity`'s default chain: environment (client secret, workload
/// identity), the App Service / Functions managed identity (`IDENTITY_ENDPOINT`), the VM
/// managed identity, then the Azure CLI. No request is sent; tokens are cached and renewed
/// before they expire.
pub fn identity_credential(
    identity: &EntraIdentity,
) -> Result<Arc<dyn TokenCredential>, ClientError> {
    // Token requests are few (tokens last an hour or more): a client of their own.
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(DEFAULT_REQUEST_TIMEOUT)
        .build()?;
    Ok(match identity {
        EntraIdentity::DefaultChain => {
            let http: Arc<dyn HttpClient> = Arc::new(http);
            let chain = DefaultAzureCredentialBuilder::default()
                .with_options(TokenCredentialOptions::from(http))
                .build()
                .map_err(ClientError::Credential)?;
            Arc::new(chain)
        }
        EntraIdentity::UserAssigned(id) => {
            Arc::new(UserAssignedCredential::new(id, http).map_err(ClientError::Credential)?)
        }
    })
}

/// A client for one filesystem (container) of the account at `endpoint` (the DFS
/// endpoint, or the Blob endpoint for the requests of `put_blob_if_absent` and
/// `blob_length`: both sign requests alike), without the library's retries.
pub fn filesystem_client(
    settings: &AdlsSettings,
    endpoint: &str,
    credentials: StorageCredentials,
    http: reqwest::Client,
    filesystem: &str,
) -> FileSystemClient {
    let location = CloudLocation::Custom {
        account: settings.account.clone(),
        uri: endpoint.to_owned(),
    };
    let transport = Transport {
        http,
        rename_source_sas: match &settings.credential {
            Credential::Sas(token) => Some(token.expose().to_owned()),
            _ => None,
        },
    };
    DataLakeClientBuilder::with_location(location, credentials)
        .transport(TransportOptions::new_custom_policy(Arc::new(transport)))
        .retry(RetryOptions::none())
        .build()
        .file_system_client(filesystem)
}

/// The last step of the client's pipeline: sends each request over the pooled client and,
/// with a SAS credential, appends the SAS to a rename's source. The service authorizes a
/// rename's source on its own and needs the SAS there (the other Azure SDKs send it so);
/// this version of the library sends the bare path, and every rename would get a 403.
struct Transport {
    http: reqwest::Client,
    rename_source_sas: Option<String>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the SAS.
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

#[async_trait]
impl Policy for Transport {
    async fn send(
        &self,
        _ctx: &Context,
        request: &mut Request,
        _next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        if let Some(sas) = &self.rename_source_sas {
            if let Some(source) = request.headers().get_optional_string(&RENAME_SOURCE) {
                request.insert_header(RENAME_SOURCE, format!("{source}?{sas}"));
            }
        }
        self.http.execute_request(request).await
    }
}

/// Appends `contents` to an empty file and commits them in the same request (`flush=true`,
/// service version 2020-10-02 and later; the library only offers a separate append and
/// flush). One request fewer per file: a quarter of the storage transactions, and of the
/// latency, of create + append + flush + rename.
pub async fn append_and_flush(file: &FileClient, contents: &Bytes) -> azure_core::Result<()> {
    let mut url = file.url()?;
    url.query_pairs_mut()
        .append_pair("action", "append")
        .append_pair("position", "0")
        .append_pair("flush", "true");
    let mut request = Request::new(url, Method::Patch);
    // The library's own append sends the length as an i32 too; a record is at most a few
    // times a 16 MiB document.
    let length = i32::try_from(contents.len()).unwrap_or(i32::MAX);
    request.insert_headers(&ContentLength::new(length));
    request.insert_headers(&ContentType::new("application/octet-stream"));
    request.set_body(contents.clone());
    file.send(&mut Context::new(), &mut request).await?;
    Ok(())
}

/// Put Blob with `If-None-Match: *`: `contents` become the block blob at `blob` (a client
/// on the Blob endpoint) in one request, complete and at once, unless something is there
/// (409 `BlobAlreadyExists`, or 412). Sent raw through the filesystem client's pipeline
/// (its credentials, transport and signing, which are the Blob service's too) rather than
/// with a second storage crate.
pub async fn put_blob_if_absent(blob: &FileClient, contents: &Bytes) -> azure_core::Result<()> {
    let mut request = Request::new(blob.url()?, Method::Put);
    request.insert_header(headers::BLOB_TYPE, "BlockBlob");
    request.insert_header(headers::IF_NONE_MATCH, "*");
    // Put Blob takes up to 5000 MiB; change files are far below i32::MAX.
    let length = i32::try_from(contents.len()).unwrap_or(i32::MAX);
    request.insert_headers(&ContentLength::new(length));
    request.insert_headers(&ContentType::new("application/octet-stream"));
    request.set_body(contents.clone());
    blob.send(&mut Context::new(), &mut request).await?;
    Ok(())
}

/// Get Blob Properties (`HEAD`) on the Blob endpoint: the blob's length.
pub async fn blob_length(blob: &FileClient) -> azure_core::Result<Option<u64>> {
    let mut request = Request::new(blob.url()?, Method::Head);
    let response = blob.send(&mut Context::new(), &mut request).await?;
    Ok(response
        .headers()
        .get_optional_str(&headers::CONTENT_LENGTH)
        .and_then(|length| length.parse().ok()))
}

/// One page of a List Paths on the filesystem: its entries and the continuation token for
/// the next page, if any.
pub struct ListPage {
    pub paths: Vec<azure_storage_datalake::file_system::Path>,
    pub continuation: Option<String>,
}

/// Asks for one page of the paths under `directory` (the filesystem root when empty), its
/// whole tree when `recursive`, else only its direct children (files and folders), starting
/// at `continuation`. The library's own builder sends a starting token as
/// `marker=`, which the DFS endpoint ignores, so a page could not be asked for again after
/// a failure; this sends `continuation=` as the service documents it.
pub async fn list_page(
    filesystem: &FileSystemClient,
    directory: &str,
    recursive: bool,
    max_results: u32,
    continuation: Option<&str>,
) -> azure_core::Result<ListPage> {
    // The filesystem client keeps its URL and pipeline to itself; a file client shares
    // both, and its URL minus the name is the filesystem's.
    let anchor = filesystem.get_file_client("list");
    let mut url = anchor.url()?;
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop();
    }
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("resource", "filesystem")
            .append_pair("recursive", if recursive { "true" } else { "false" })
            .append_pair("maxResults", &max_results.to_string());
        if !directory.is_empty() {
            query.append_pair("directory", directory);
        }
        if let Some(token) = continuation {
            query.append_pair("continuation", token);
        }
    }
    let mut request = Request::new(url, Method::Get);
    let response = anchor.send(&mut Context::new(), &mut request).await?;
    let (_, headers, body) = response.deconstruct();
    let list: azure_storage_datalake::file_system::PathList = body.collect().await?.try_into()?;
    Ok(ListPage {
        paths: list.paths,
        continuation: headers
            .get_optional_str(&azure_core::headers::CONTINUATION)
            .filter(|token| !token.is_empty())
            .map(str::to_owned),
    })
}

/// The whole file, with a plain `GET`: the library's `read()` always asks for a range,
/// which the service refuses on an empty file (416).
pub async fn read_whole(file: &FileClient) -> azure_core::Result<Bytes> {
    let mut request = Request::new(file.url()?, Method::Get);
    let response = file.send(&mut Context::new(), &mut request).await?;
    response.into_body().collect().await
}
