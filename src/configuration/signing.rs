//! Signed requests: `INGEST_HMAC_SECRET` turns the check on, `INGEST_HMAC_TOLERANCE_SECS`
//! bounds how old (or how far ahead) a signature's timestamp may be.

use super::table::Key;
use super::vars::Vars;
use super::{ConfigError, Secret};

/// Shorter secrets are guessable offline from one captured request.
const MIN_SECRET_LEN: usize = 16;

/// The shared secret and the accepted clock difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningSettings {
    /// Used exactly as set (no trimming): the Atlas function signs with the same bytes.
    pub secret: Secret,
    pub tolerance_secs: u64,
}

/// `None` when `INGEST_HMAC_SECRET` is unset: requests are accepted unsigned. The
/// tolerance is checked either way, so a typo shows before signing is turned on.
pub(super) fn from_vars<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<Option<SigningSettings>, ConfigError> {
    let tolerance_secs = vars.number(Key::IngestHmacToleranceSecs)?;
    let Some(secret) = vars.text(Key::IngestHmacSecret)? else {
        return Ok(None);
    };
    // An app setting the platform could not resolve keeps its reference text: taking that
    // as the secret would refuse every request with 401. Stop and say why instead.
    if secret.text.trim_start().starts_with("@Microsoft.KeyVault(") {
        return Err(ConfigError::new(
            secret.setting,
            "is an unresolved Key Vault reference: give the Function App's identity the Key Vault Secrets User role on the vault (the template does), then restart the app",
        ));
    }
    if secret.text.len() < MIN_SECRET_LEN {
        return Err(ConfigError::new(
            secret.setting,
            format!("is shorter than {MIN_SECRET_LEN} characters; use a long random value"),
        ));
    }
    Ok(Some(SigningSettings {
        secret: Secret::new(secret.text),
        tolerance_secs,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error_setting, settings};
    use super::*;
    use crate::configuration::DEFAULT_TOLERANCE_SECS;

    const SECRET: &str = "a-long-random-signing-secret";

    #[test]
    fn an_unresolved_key_vault_reference_stops_start_up() {
        let reference = "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/s/)";
        assert_eq!(
            error_setting(&[("INGEST_HMAC_SECRET", reference)]),
            "INGEST_HMAC_SECRET"
        );
        let error = settings(&[("INGEST_HMAC_SECRET", reference)]).expect_err("refused");
        assert!(
            error.to_string().contains("Key Vault Secrets User"),
            "{error}"
        );
    }

    #[test]
    fn unset_means_unsigned_requests_are_accepted() {
        assert_eq!(settings(&[]).expect("valid").signing, None);
        // A tolerance alone changes nothing (and is still checked).
        let s = settings(&[("INGEST_HMAC_TOLERANCE_SECS", "60")]).expect("valid");
        assert_eq!(s.signing, None);
    }

    #[test]
    fn secret_and_tolerance() {
        let s = settings(&[("INGEST_HMAC_SECRET", SECRET)]).expect("valid");
        assert_eq!(
            s.signing,
            Some(SigningSettings {
                secret: Secret::new(SECRET),
                tolerance_secs: DEFAULT_TOLERANCE_SECS
            })
        );
        let s = settings(&[
            ("INGEST_HMAC_SECRET", SECRET),
            ("INGEST_HMAC_TOLERANCE_SECS", "60"),
        ])
        .expect("valid");
        assert_eq!(s.signing.map(|s| s.tolerance_secs), Some(60));
    }

    #[test]
    fn invalid_values_name_the_setting() {
        assert_eq!(
            error_setting(&[("INGEST_HMAC_SECRET", "short")]),
            "INGEST_HMAC_SECRET"
        );
        for tolerance in ["0", "3601", "-1", "five"] {
            assert_eq!(
                error_setting(&[
                    ("INGEST_HMAC_SECRET", SECRET),
                    ("INGEST_HMAC_TOLERANCE_SECS", tolerance)
                ]),
                "INGEST_HMAC_TOLERANCE_SECS",
                "{tolerance}"
            );
        }
    }

    #[test]
    fn the_secret_is_never_printed() {
        let s = settings(&[("INGEST_HMAC_SECRET", SECRET)]).expect("valid");
        let shown = format!("{s:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        let error = settings(&[("INGEST_HMAC_SECRET", "tooshort")]).expect_err("refused");
        assert!(!error.to_string().contains("tooshort"), "{error}");
    }
}
