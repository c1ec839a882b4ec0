//! The service's error answers: status, `x-ms-error-code`, and `{"error":{"code","message"}}`.

use std::borrow::Cow;

#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: Cow<'static, str>,
    pub message: Cow<'static, str>,
    /// Appended to the message as the service's `AuthenticationErrorDetail` is.
    pub detail: Option<String>,
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub(crate) fn new(
        status: u16,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub(crate) fn detail(mut self, d: String) -> Self {
        self.detail = Some(d);
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn filesystem_not_found() -> Self {
        Self::new(
            404,
            "FilesystemNotFound",
            "The specified filesystem does not exist.",
        )
    }
    pub(crate) fn path_not_found() -> Self {
        Self::new(404, "PathNotFound", "The specified path does not exist.")
    }
    pub(crate) fn path_already_exists() -> Self {
        Self::new(
            409,
            "PathAlreadyExists",
            "The specified path already exists.",
        )
    }
    pub(crate) fn path_conflict() -> Self {
        Self::new(
            409,
            "PathConflict",
            "The specified path, or an element of the path, exists and its resource type is invalid for this operation.",
        )
    }
    pub(crate) fn condition_not_met() -> Self {
        Self::new(
            412,
            "ConditionNotMet",
            "The condition specified using HTTP conditional header(s) is not met.",
        )
    }
    pub(crate) fn source_condition_not_met() -> Self {
        Self::new(
            412,
            "SourceConditionNotMet",
            "The source condition specified using HTTP conditional header(s) is not met.",
        )
    }
    pub(crate) fn invalid_flush_position() -> Self {
        Self::new(
            400,
            "InvalidFlushPosition",
            "The uploaded data is not contiguous or the position query parameter value is not equal to the length of the file after appending the uploaded data.",
        )
    }
    pub(crate) fn content_length_must_be_zero() -> Self {
        Self::new(
            400,
            "ContentLengthMustBeZero",
            "The Content-Length request header must be zero.",
        )
    }
    pub(crate) fn missing_query(name: &str) -> Self {
        Self::new(
            400,
            "MissingRequiredQueryParameter",
            "A query parameter that's mandatory for this request is not specified.",
        )
        .detail(format!("QueryParameterName: {name}"))
    }
    pub(crate) fn invalid_query(name: &str, value: &str) -> Self {
        Self::new(
            400,
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid.",
        )
        .detail(format!(
            "QueryParameterName: {name}\nQueryParameterValue: {value}"
        ))
    }
    pub(crate) fn invalid_uri(why: String) -> Self {
        Self::new(400, "InvalidUri", "The request URI is invalid.").detail(why)
    }
    pub(crate) fn invalid_source_uri(why: String) -> Self {
        Self::new(400, "InvalidSourceUri", "The source URI is invalid.").detail(why)
    }
    pub(crate) fn resource_type_mismatch() -> Self {
        Self::new(
            409,
            "ResourceTypeMismatch",
            "The resource type specified in the request does not match the type of the resource.",
        )
    }
    pub(crate) fn not_implemented(what: String) -> Self {
        Self::new(
            501,
            "NotImplementedByDfsTestServer",
            "dfs-test-server does not implement this request.",
        )
        .detail(what)
    }
}
