//! Helpers shared by the integration tests: clients configured as the real one would be.
#![allow(dead_code)]

use azure_core::auth::Secret;
use azure_core::error::ErrorKind;
use azure_core::{ClientOptions, FixedRetryOptions, RetryOptions, TransportOptions};
use azure_storage::prelude::StorageCredentials;
use azure_storage::CloudLocation;
use azure_storage_datalake::prelude::{DataLakeClient, DataLakeClientBuilder};
use dfs_test_server::{DfsServer, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use std::sync::Arc;
use std::time::Duration;

pub fn key_credentials() -> StorageCredentials {
    StorageCredentials::access_key(DEV_ACCOUNT, Secret::new(DEV_ACCOUNT_KEY))
}

pub fn location(server: &DfsServer) -> CloudLocation {
    CloudLocation::Custom {
        account: server.account().to_owned(),
        uri: server.endpoint(),
    }
}

/// The client as the sink builds it, but without retries (each test says what it expects).
pub fn client(server: &DfsServer, creds: StorageCredentials) -> DataLakeClient {
    DataLakeClientBuilder::with_location(location(server), creds)
        .retry(RetryOptions::none())
        .build()
}

/// With quick fixed retries (the client's retry policy adds up to 255 ms of jitter).
pub fn retrying_client(
    server: &DfsServer,
    creds: StorageCredentials,
    retries: u32,
) -> DataLakeClient {
    DataLakeClientBuilder::with_location(location(server), creds)
        .retry(RetryOptions::fixed(
            FixedRetryOptions::default()
                .delay(Duration::from_millis(5))
                .max_retries(retries),
        ))
        .build()
}

/// With a transport of our own: a pooled reqwest client (the crate's default keeps no idle
/// connections) with a request timeout.
pub fn pooled_client(
    server: &DfsServer,
    creds: StorageCredentials,
    timeout: Duration,
    retry: RetryOptions,
) -> DataLakeClient {
    let http = reqwest::Client::builder().timeout(timeout).build().unwrap();
    let options = ClientOptions::default()
        .transport(TransportOptions::new(Arc::new(http)))
        .retry(retry);
    DataLakeClientBuilder::with_location(location(server), creds)
        .client_options(options)
        .build()
}

/// (status, x-ms-error-code) of a failed call; panics on a non-HTTP error.
pub fn code(e: &azure_core::Error) -> (u16, String) {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            (u16::from(*status), error_code.clone().unwrap_or_default())
        }
        k => panic!("expected an HTTP error, got {k:?}: {e}"),
    }
}

pub fn is_io(e: &azure_core::Error) -> bool {
    matches!(e.kind(), ErrorKind::Io)
}

pub fn sas_url(server: &DfsServer, path: &str, sas: &str, extra_query: &str) -> String {
    let sep = if extra_query.is_empty() { "" } else { "&" };
    format!("{}{path}?{extra_query}{sep}{sas}", server.endpoint())
}
