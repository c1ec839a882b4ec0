//! Which Microsoft Entra ID identity gets storage tokens: the change-file sink's
//! (`STORAGE_AUTH=identity`) and the mirror's landing zone (Entra ID only).
//!
//! Function Apps commonly run under a *user-assigned* managed identity, selected by its
//! client id (`AZURE_CLIENT_ID`, the name every Azure SDK reads) or its object id. With a
//! client secret or a federated token file beside it, `AZURE_CLIENT_ID` names a service
//! principal instead, and the default chain (environment, system-assigned managed identity,
//! Azure CLI) uses it, as it always has.

use super::table::Key;
use super::vars::{Given, Vars};
use super::ConfigError;

/// The identity that asks Microsoft Entra ID for tokens.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EntraIdentity {
    /// `azure_identity`'s default chain: a client secret or workload identity from the
    /// environment, the system-assigned managed identity, then the Azure CLI.
    #[default]
    DefaultChain,
    /// A user-assigned managed identity of the Function App (or VM).
    UserAssigned(UserAssigned),
}

/// How a user-assigned managed identity is named. Not by resource id: App Service's
/// identity endpoint is asked in a way that cannot select one by resource id
/// (`azure_identity` 1.x refuses it there), so start-up refuses it everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAssigned {
    /// Its client (application) id: `AZURE_CLIENT_ID`.
    ClientId(String),
    /// Its object (principal) id: `STORAGE_IDENTITY_OBJECT_ID`.
    ObjectId(String),
}

/// Reads the identity settings. Read whether or not Entra ID is used, so a mistake in them
/// shows at start-up rather than when a landing zone is added.
pub(super) fn from_vars<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<EntraIdentity, ConfigError> {
    let client_id = vars.text(Key::AzureClientId)?;
    let object_id = vars.text(Key::StorageIdentityObjectId)?;
    let service_principal =
        vars.is_set(Key::AzureClientSecret)? || vars.is_set(Key::AzureFederatedTokenFile)?;
    match (client_id, object_id) {
        (Some(client), Some(_)) => Err(ConfigError::new(
            Key::StorageIdentityObjectId.name(),
            format!(
                "contradicts {}: name the identity by one id, not both",
                client.setting
            ),
        )),
        (None, Some(object)) => Ok(EntraIdentity::UserAssigned(UserAssigned::ObjectId(guid(
            object,
            "object id",
        )?))),
        (Some(_), None) if service_principal => Ok(EntraIdentity::DefaultChain),
        (Some(client), None) => Ok(EntraIdentity::UserAssigned(UserAssigned::ClientId(guid(
            client,
            "client id",
        )?))),
        (None, None) => Ok(EntraIdentity::DefaultChain),
    }
}

/// The value if it is a GUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`), as identity ids
/// are. A resource id gets its own message: it is the usual wrong paste.
fn guid(given: Given, what: &str) -> Result<String, ConfigError> {
    let text = given.text.trim();
    let groups: Vec<&str> = text.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
    let hex = groups
        .iter()
        .all(|group| group.chars().all(|c| c.is_ascii_hexdigit()));
    if hex && lengths == [8, 4, 4, 4, 12] {
        return Ok(text.to_owned());
    }
    let problem = if text.starts_with('/') || text.contains("/providers/") {
        format!(
            "is a resource id; a user-assigned identity is selected by its {what} here (App Service's identity endpoint cannot be asked by resource id): `az identity show --ids <resource id> --query {}`",
            if what == "client id" { "clientId" } else { "principalId" }
        )
    } else {
        format!("{text:?} is not a {what} (a GUID such as 00000000-0000-0000-0000-000000000000)")
    };
    Err(ConfigError::new(given.setting, problem))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error_setting, settings};
    use super::*;

    const CLIENT: &str = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
    const OBJECT: &str = "9B2C1A7E-0000-4C1D-8E2F-123456789ABC";

    fn identity(vars: &[(&str, &str)]) -> EntraIdentity {
        settings(vars).expect("valid settings").identity
    }

    #[test]
    fn a_client_id_alone_selects_the_user_assigned_identity() {
        assert_eq!(identity(&[]), EntraIdentity::DefaultChain);
        assert_eq!(
            identity(&[("AZURE_CLIENT_ID", &format!(" {CLIENT} "))]),
            EntraIdentity::UserAssigned(UserAssigned::ClientId(CLIENT.into()))
        );
        assert_eq!(
            identity(&[("STORAGE_IDENTITY_OBJECT_ID", OBJECT)]),
            EntraIdentity::UserAssigned(UserAssigned::ObjectId(OBJECT.into()))
        );
    }

    #[test]
    fn a_client_id_with_a_secret_or_token_file_is_a_service_principal() {
        for companion in ["AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"] {
            assert_eq!(
                identity(&[("AZURE_CLIENT_ID", CLIENT), (companion, "x")]),
                EntraIdentity::DefaultChain,
                "{companion}"
            );
        }
    }

    #[test]
    fn resource_ids_contradictions_and_non_guids_stop_start_up() {
        let resource = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/lake";
        let error = settings(&[("AZURE_CLIENT_ID", resource)]).expect_err("refused");
        assert_eq!(error.setting, "AZURE_CLIENT_ID");
        assert!(
            error.problem.contains("resource id") && error.problem.contains("clientId"),
            "{error}"
        );
        assert_eq!(
            error_setting(&[("STORAGE_IDENTITY_OBJECT_ID", "lake-identity")]),
            "STORAGE_IDENTITY_OBJECT_ID"
        );
        assert_eq!(
            error_setting(&[
                ("AZURE_CLIENT_ID", CLIENT),
                ("STORAGE_IDENTITY_OBJECT_ID", OBJECT)
            ]),
            "STORAGE_IDENTITY_OBJECT_ID"
        );
    }
}
