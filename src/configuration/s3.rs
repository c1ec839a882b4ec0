//! The S3 settings: bucket, key prefix, region, endpoint and path style, and static
//! credentials when given. Everything else about credentials (web identity, the ECS task
//! role, the EC2 instance profile) is the standard AWS chain, which the S3 client reads
//! from the environment itself: no secret of those passes through here.

use std::time::Duration;

use super::storage::Secret;
use super::table::Key;
use super::vars::Vars;
use super::ConfigError;
use crate::domain::Segment;

/// An S3 bucket (or an S3-compatible store's) and how the sink uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    /// Folders before the lake's paths (`S3_PREFIX`); none by default.
    pub prefix: Vec<Segment>,
    /// `AWS_REGION`; unset, the client's own (`AWS_DEFAULT_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// `S3_ENDPOINT`: an S3-compatible store; unset, AWS.
    pub endpoint: Option<String>,
    pub path_style: bool,
    /// `AWS_ACCESS_KEY_ID` and its secret; unset, the rest of the AWS chain.
    pub static_keys: Option<StaticKeys>,
    /// Files written at once, process-wide.
    pub write_concurrency: usize,
    /// Longest wait for one storage request.
    pub request_timeout: Duration,
    /// Longest time spent retrying one file.
    pub retry_budget: Duration,
}

/// Static AWS credentials. Never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticKeys {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl S3Settings {
    /// Where records land, for logs: `s3://<bucket>/<prefix>` and the endpoint when not
    /// AWS's. Never a credential.
    pub fn location(&self) -> String {
        let mut location = format!("s3://{}", self.bucket);
        for segment in &self.prefix {
            location.push('/');
            location.push_str(segment.as_str());
        }
        if let Some(endpoint) = &self.endpoint {
            location.push_str(&format!(" at {endpoint}"));
        }
        location
    }

    /// Which credential source the client uses, for logs.
    pub fn credential_kind(&self) -> &'static str {
        match self.static_keys {
            Some(_) => "static access key",
            None => "AWS credential chain",
        }
    }
}

/// Reads the S3 settings when `S3_BUCKET` is set (`None` otherwise); `limits` are the
/// shared storage limits (concurrency, request timeout, retry budget).
pub(super) fn from_vars<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    limits: (usize, Duration, Duration),
) -> Result<Option<S3Settings>, ConfigError> {
    let Some(bucket) = vars.given(Key::S3Bucket)? else {
        return Ok(None);
    };
    let name = bucket.text.trim().to_owned();
    check_bucket(&name).map_err(|problem| ConfigError::new(bucket.setting, problem))?;
    let prefix = match vars.text(Key::S3Prefix)? {
        Some(given) => super::folders(&given)?,
        None => Vec::new(),
    };
    let access_key = vars.given(Key::AwsAccessKeyId)?;
    let secret = vars.given(Key::AwsSecretAccessKey)?;
    let static_keys = match (access_key, secret) {
        (Some(id), Some(secret)) => Some(StaticKeys {
            access_key_id: id.text.trim().to_owned(),
            secret_access_key: Secret::new(secret.text.trim()),
            session_token: vars
                .given(Key::AwsSessionToken)?
                .map(|token| Secret::new(token.text.trim())),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::new(
                Key::AwsAccessKeyId.name(),
                "is set without AWS_SECRET_ACCESS_KEY: set both, or neither to use the AWS credential chain",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                Key::AwsSecretAccessKey.name(),
                "is set without AWS_ACCESS_KEY_ID: set both, or neither to use the AWS credential chain",
            ))
        }
    };
    let endpoint = match vars.text(Key::S3Endpoint)? {
        Some(given) if !given.text.contains("://") => {
            return Err(ConfigError::new(
                given.setting,
                "must be a URL such as `https://s3.example.com` or `http://127.0.0.1:9000`",
            ))
        }
        Some(given) => Some(given.text.trim().trim_end_matches('/').to_owned()),
        None => None,
    };
    let (write_concurrency, request_timeout, retry_budget) = limits;
    Ok(Some(S3Settings {
        bucket: name,
        prefix,
        region: vars
            .text(Key::AwsRegion)?
            .map(|given| given.text.trim().to_owned()),
        endpoint,
        path_style: vars.flag(Key::S3PathStyle)?,
        static_keys,
        write_concurrency,
        request_timeout,
        retry_budget,
    }))
}

/// S3's bucket naming rules, the part a typo breaks: 3-63 lower-case letters, digits,
/// dots and hyphens, starting and ending with a letter or digit.
fn check_bucket(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = name
        .bytes()
        .next()
        .zip(name.bytes().next_back())
        .is_some_and(|(first, last)| first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric());
    if (3..=63).contains(&name.len()) && valid_chars && ends_ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a bucket name: 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error_setting, settings};
    use super::super::StorageSettings;

    #[test]
    fn a_bucket_selects_s3_with_its_prefix_region_and_endpoint() {
        let s = settings(&[
            ("S3_BUCKET", "lake-bucket"),
            ("S3_PREFIX", "/mongo/prod/"),
            ("AWS_REGION", "eu-west-1"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000/"),
            ("S3_PATH_STYLE", "true"),
        ])
        .expect("valid");
        let StorageSettings::S3(s3) = s.storage else {
            panic!("not S3: {:?}", s.storage)
        };
        assert_eq!(s3.bucket, "lake-bucket");
        assert_eq!(
            s3.location(),
            "s3://lake-bucket/mongo/prod at http://127.0.0.1:9000"
        );
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert!(s3.path_style);
        assert_eq!(s3.static_keys, None);
        assert_eq!(s3.credential_kind(), "AWS credential chain");
    }

    #[test]
    fn contradictions_and_bad_values_name_their_setting() {
        assert_eq!(error_setting(&[("S3_BUCKET", "Bad_Bucket")]), "S3_BUCKET");
        assert_eq!(
            error_setting(&[("S3_BUCKET", "lake"), ("AWS_ACCESS_KEY_ID", "AKIA")]),
            "AWS_ACCESS_KEY_ID"
        );
        assert_eq!(
            error_setting(&[("STORAGE_KIND", "s3")]),
            "S3_BUCKET",
            "s3 needs a bucket"
        );
        assert_eq!(
            error_setting(&[("S3_BUCKET", "lake"), ("STORAGE_ACCOUNT_NAME", "acct")]),
            "STORAGE_ACCOUNT_NAME"
        );
        assert_eq!(
            error_setting(&[("S3_BUCKET", "lake"), ("STORAGE_KIND", "local")]),
            "STORAGE_KIND"
        );
        assert_eq!(
            error_setting(&[("S3_BUCKET", "lake"), ("S3_ENDPOINT", "minio:9000")]),
            "S3_ENDPOINT"
        );
    }

    #[test]
    fn static_keys_are_never_printed() {
        let s = settings(&[
            ("S3_BUCKET", "lake"),
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
        ])
        .expect("valid");
        assert!(!format!("{s:?}").contains("very-secret-value"));
    }
}
