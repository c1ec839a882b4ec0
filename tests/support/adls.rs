//! ADLS sink settings for tests against the DFS test server: short timeouts, a 10 s retry
//! budget, and the account the server knows.

use std::time::Duration;

use dfs_test_server::{DfsServer, DEV_ACCOUNT, DEV_ACCOUNT_KEY};
use mongo_lake_ingest::configuration::{AdlsSettings, Credential, Secret};

/// Settings for `server` with `credential`.
pub fn settings(server: &DfsServer, credential: Credential) -> AdlsSettings {
    AdlsSettings {
        account: DEV_ACCOUNT.to_owned(),
        credential,
        endpoint: server.endpoint(),
        create_filesystem: false,
        write_concurrency: 16,
        request_timeout: Duration::from_secs(2),
        retry_budget: Duration::from_secs(10),
    }
}

/// The account key the server checks Shared Key signatures with.
pub fn key() -> Credential {
    Credential::AccountKey(Secret::new(DEV_ACCOUNT_KEY))
}

/// A DFS test server with the lake's container, as the handler's ADLS tests start it.
pub async fn server_with_container() -> DfsServer {
    DfsServer::builder()
        .filesystem(super::CONTAINER)
        .start()
        .await
        .expect("DFS server starts")
}
