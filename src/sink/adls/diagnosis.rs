//! What a storage failure means for the operator: the status and error code, and, where
//! the cause is known, the setting or role to fix. Built from status and code only, never
//! from messages or URLs, which can carry SAS signatures.

use azure_core::error::ErrorKind;

use super::retry::{is_transient, status_and_code, with_causes};
use crate::configuration::{AdlsSettings, Credential};

/// What went wrong, with what to do about it when that is known. Built from the
/// status and error code only: messages and URLs can carry SAS signatures.
pub(super) fn describe(
    error: &azure_core::Error,
    settings: &AdlsSettings,
    filesystem: &str,
) -> String {
    let Some((status, code)) = status_and_code(error) else {
        return match error.kind() {
            ErrorKind::Credential => format!(
                "could not get a Microsoft Entra ID token ({}); {}",
                with_causes(error),
                match settings.credential {
                    _ if is_transient(error) => "the token endpoint was busy or unreachable until the retry budget ended",
                    Credential::UserAssignedIdentity(_) => "on Azure, add the user-assigned identity AZURE_CLIENT_ID (or STORAGE_IDENTITY_OBJECT_ID) names to the Function App's identities",
                    _ => "on Azure, turn on the Function App's system-assigned identity, or name a user-assigned one with AZURE_CLIENT_ID",
                }
            ),
            _ => cause(error),
        };
    };
    let entra_role = if is_onelake(&settings.endpoint) {
        "the identity may not write here: give it the Contributor role on the Fabric workspace"
    } else {
        "the identity may not write here: give it the \"Storage Blob Data Contributor\" role on the storage account or container"
    };
    let code = code.unwrap_or("no error code");
    let hint = match (status, code) {
        (404, "FilesystemNotFound" | "ContainerNotFound") => format!(
            "filesystem {:?} does not exist in account {}: create it, or set STORAGE_CREATE_FILESYSTEM=true",
            filesystem, settings.account
        ),
        (403, "KeyBasedAuthenticationNotPermitted") => "the account has shared key access turned off: use STORAGE_AUTH=identity (Microsoft Entra ID) instead of a key or key-signed SAS".into(),
        (403, "AuthorizationPermissionMismatch" | "AuthorizationFailure") => {
            match settings.credential {
                Credential::EntraId | Credential::UserAssignedIdentity(_) => entra_role.into(),
                Credential::Sas(_) => "the SAS token lacks permissions: it needs read, add, create, write, delete and list (sp=racwdl) on the blob service".into(),
                Credential::AccountKey(_) => "the account refuses this request (its network rules, or a firewall in front of it)".into(),
            }
        }
        (401 | 403, _) => match settings.credential {
            Credential::AccountKey(_) => "authentication failed: check storage_account_key (or the connection string's AccountKey) against the account's access keys".into(),
            Credential::Sas(_) => "authentication failed: check STORAGE_SAS_TOKEN (expired, revoked or for another account)".into(),
            Credential::EntraId | Credential::UserAssignedIdentity(_) => format!("the Microsoft Entra ID token was refused: check the identity's tenant, and {}", entra_role.trim_start_matches("the identity may not write here: ")),
        },
        _ => String::new(),
    };
    if hint.is_empty() {
        cause(error)
    } else {
        format!("{}: {hint}", cause(error))
    }
}

/// Whether the endpoint is Microsoft Fabric's OneLake (roles are the workspace's there), or
/// stands for it: a DFS server on loopback serving the account `onelake`, as the tests run
/// one (`MIRROR_LANDING_ZONE` takes loopback URLs with the account in the path).
fn is_onelake(endpoint: &str) -> bool {
    let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
        .iter()
        .any(|origin| endpoint.starts_with(origin));
    endpoint.contains(".fabric.microsoft.com")
        || (loopback && endpoint.trim_end_matches('/').ends_with("/onelake"))
}

/// The failure in a few words, for a retry's log line: the status and storage error code,
/// or the kind of failure. Never a message, which can quote a URL.
pub(super) fn cause(error: &azure_core::Error) -> String {
    match (status_and_code(error), error.kind()) {
        (Some((status, code)), _) => format!("HTTP {status} {}", code.unwrap_or("no error code")),
        (None, ErrorKind::Io) => {
            "no answer from the storage endpoint (connection failed or timed out)".into()
        }
        (None, ErrorKind::Credential) => "no Microsoft Entra ID token".into(),
        (None, other) => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::{Secret, UserAssigned};
    use azure_core::StatusCode;

    fn settings(credential: Credential) -> AdlsSettings {
        AdlsSettings {
            account: "lakeacct".into(),
            credential,
            endpoint: "https://lakeacct.dfs.core.windows.net/".into(),
            create_filesystem: false,
            write_concurrency: 1,
            request_timeout: std::time::Duration::from_secs(1),
            retry_budget: std::time::Duration::from_secs(1),
            write: crate::configuration::WriteProtocol::Dfs,
        }
    }

    fn http(status: StatusCode, code: &str) -> azure_core::Error {
        azure_core::Error::new(
            ErrorKind::HttpResponse {
                status,
                error_code: Some(code.to_owned()),
            },
            "the message may quote a URL with sig=SECRET",
        )
    }

    #[test]
    fn entra_failures_name_the_identity_or_the_workspace() {
        let user_assigned = settings(Credential::UserAssignedIdentity(UserAssigned::ClientId(
            "id".into(),
        )));
        let mut onelake = settings(Credential::EntraId);
        onelake.endpoint = "https://onelake.dfs.fabric.microsoft.com/".into();
        let not_assigned = azure_core::Error::full(
            ErrorKind::Credential,
            azure_core::Error::message(
                ErrorKind::HttpResponse {
                    status: StatusCode::BadRequest,
                    error_code: None,
                },
                "the identity endpoint answered 400",
            ),
            "ManagedIdentityCredential authentication failed.",
        );
        let text = describe(&not_assigned, &user_assigned, "mongodb");
        assert!(
            text.contains("answered 400") && text.contains("AZURE_CLIENT_ID"),
            "{text}"
        );
        let refused = http(StatusCode::Forbidden, "AuthorizationPermissionMismatch");
        let text = describe(&refused, &onelake, "workspace");
        assert!(text.contains("Fabric workspace"), "{text}");
        onelake.endpoint = "http://127.0.0.1:10004/onelake/".into();
        let text = describe(&refused, &onelake, "workspace");
        assert!(text.contains("Fabric workspace"), "{text}");
        onelake.endpoint = "http://127.0.0.1:10004/devstoreaccount1/".into();
        let text = describe(&refused, &onelake, "workspace");
        assert!(text.contains("Storage Blob Data Contributor"), "{text}");
    }

    #[test]
    fn each_failure_names_what_to_fix() {
        let key = settings(Credential::AccountKey(Secret::new("a2V5")));
        let sas = settings(Credential::Sas(Secret::new("sig=SECRET")));
        let entra = settings(Credential::EntraId);
        let cases = [
            (
                http(StatusCode::NotFound, "FilesystemNotFound"),
                &key,
                "STORAGE_CREATE_FILESYSTEM",
            ),
            (
                http(StatusCode::Forbidden, "AuthenticationFailed"),
                &key,
                "storage_account_key",
            ),
            (
                http(StatusCode::Forbidden, "AuthenticationFailed"),
                &sas,
                "STORAGE_SAS_TOKEN",
            ),
            (
                http(StatusCode::Forbidden, "AuthorizationPermissionMismatch"),
                &sas,
                "sp=racwdl",
            ),
            (
                http(StatusCode::Forbidden, "AuthorizationPermissionMismatch"),
                &entra,
                "Storage Blob Data Contributor",
            ),
            (
                http(StatusCode::Forbidden, "KeyBasedAuthenticationNotPermitted"),
                &key,
                "STORAGE_AUTH=identity",
            ),
            (
                azure_core::Error::new(ErrorKind::Io, "https://x/?sig=SECRET"),
                &key,
                "no answer",
            ),
        ];
        for (error, settings, expected) in cases {
            let text = describe(&error, settings, "mongodb");
            assert!(text.contains(expected), "{text}");
            assert!(!text.contains("SECRET"), "never the message or URL: {text}");
        }
        assert_eq!(
            describe(
                &http(StatusCode::ServiceUnavailable, "ServerBusy"),
                &key,
                "mongodb"
            ),
            "HTTP 503 ServerBusy"
        );
    }
}
