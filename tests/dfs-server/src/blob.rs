//! The account's Blob endpoint, as far as a writer of whole files needs it: Put Blob (a
//! block blob in one request, `If-None-Match: *` honoured) and Get Blob Properties (`HEAD`).
//! It works on the namespace the DFS endpoint serves, as an account with a hierarchical
//! namespace does: a blob put here is a file there (its missing parent folders made), and
//! the DFS endpoint lists, reads and deletes it. Authorization is the DFS endpoint's: Shared
//! Key signs the same canonical form, an account SAS covers both, bearer tokens likewise.

use std::time::SystemTime;

use hyper::header::HeaderMap;
use hyper::Method;

use crate::error::ApiError;
use crate::ops::{
    check_read, content_type, fs_name, make_ancestors, path_name, CondFail, Conditions, Ctx, Req,
    Resp, Target,
};
use crate::store::{etag_header, Node, PathKind, Store};
use crate::util::http_date;
use crate::OpKind;

/// The kind of a request on the Blob endpoint; anything but the two operations it serves
/// is [`OpKind::Unsupported`].
pub(crate) fn classify(method: &Method, target: &Target, headers: &HeaderMap) -> OpKind {
    match (target, method) {
        (Target::Path(..), &Method::PUT) if headers.contains_key("x-ms-blob-type") => {
            OpKind::PutBlob
        }
        (Target::Path(..), &Method::HEAD) => OpKind::GetBlobProperties,
        _ => OpKind::Unsupported,
    }
}

/// The answer to a request the Blob endpoint does not serve here.
pub(crate) fn unsupported(r: &Req) -> ApiError {
    ApiError::not_implemented(format!(
        "the Blob endpoint serves Put Blob (PUT with x-ms-blob-type) and Get Blob Properties (HEAD) on a blob only; {:?} is not one of them",
        r.target
    ))
}

fn container_not_found() -> ApiError {
    ApiError::new(
        404,
        "ContainerNotFound",
        "The specified container does not exist.",
    )
}

fn blob_not_found() -> ApiError {
    ApiError::new(404, "BlobNotFound", "The specified blob does not exist.")
}

/// Put Blob: the whole body becomes the file at once. `If-None-Match: *` on a path that
/// exists is 409 `BlobAlreadyExists`; any other unmet condition 412 `ConditionNotMet`.
pub(crate) fn put(
    store: &mut Store,
    ctx: &Ctx,
    r: &Req,
    now: SystemTime,
) -> Result<Resp, ApiError> {
    match r.h("x-ms-blob-type") {
        Some("BlockBlob") => {}
        Some(other) => {
            return Err(ApiError::not_implemented(format!(
                "x-ms-blob-type: {other} (only BlockBlob)"
            )))
        }
        None => unreachable!("classified as Put Blob"),
    }
    let etag = store.etag();
    let path = path_name(r);
    let f = store
        .filesystems
        .get_mut(fs_name(r))
        .ok_or_else(container_not_found)?;
    let existing = f.paths.get(path);
    Conditions::from(&r.headers, "")
        .check(existing.map(|n| (n.etag, n.modified)), false)
        .map_err(|failed| match failed {
            CondFail::Exists => ApiError::new(
                409,
                "BlobAlreadyExists",
                "The specified blob already exists.",
            ),
            _ => ApiError::condition_not_met(),
        })?;
    if existing.is_some_and(|n| n.kind == PathKind::Directory) {
        return Err(ApiError::path_conflict());
    }
    make_ancestors(f, path, etag, now)?;
    let mut node = Node::new(PathKind::File, etag, now);
    node.data = r.body.clone();
    node.content_type = r
        .h("x-ms-blob-content-type")
        .or_else(|| r.h("content-type"))
        .map(str::to_owned);
    f.paths.insert(path.to_owned(), node);
    Ok(ctx.empty(
        201,
        vec![
            ("etag", etag_header(etag)),
            ("last-modified", http_date(now)),
            ("x-ms-request-server-encrypted", "true".into()),
        ],
    ))
}

/// Get Blob Properties: length, type, ETag. A folder answers as the service's does for
/// a hierarchical namespace: a blob of no bytes with `hdi_isfolder` metadata.
pub(crate) fn properties(store: &Store, ctx: &Ctx, r: &Req) -> Result<Resp, ApiError> {
    let f = store
        .filesystems
        .get(fs_name(r))
        .ok_or_else(container_not_found)?;
    let n = f.paths.get(path_name(r)).ok_or_else(blob_not_found)?;
    if let Some(resp) = check_read(ctx, r, n)? {
        return Ok(resp);
    }
    let mut h = vec![
        ("etag", etag_header(n.etag)),
        ("last-modified", http_date(n.modified)),
        ("x-ms-creation-time", http_date(n.created)),
        ("x-ms-blob-type", "BlockBlob".into()),
        ("content-length", n.data.len().to_string()),
        ("content-type", content_type(n).to_owned()),
        ("accept-ranges", "bytes".into()),
        ("x-ms-server-encrypted", "true".into()),
        ("x-ms-lease-state", "available".into()),
        ("x-ms-lease-status", "unlocked".into()),
    ];
    if n.kind == PathKind::Directory {
        h.push(("x-ms-meta-hdi_isfolder", "true".into()));
    }
    Ok(ctx.empty(200, h))
}
