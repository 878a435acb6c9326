//! [`S3ObjectReader`]: ranged GETs of exactly the object version an event named.
//!
//! The version is pinned with `versionId` when the bucket is versioned, else with `If-Match` on
//! the event's ETag, so a key overwritten since the event reads as [`ReadError::Changed`] rather
//! than as bytes of another file.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::ports::{ByteRange, ObjectReader, ReadError};

/// Reads byte ranges from S3.
#[derive(Debug, Clone)]
pub struct S3ObjectReader {
    client: aws_sdk_s3::Client,
}

impl S3ObjectReader {
    pub fn new(client: aws_sdk_s3::Client) -> S3ObjectReader {
        S3ObjectReader { client }
    }
}

impl ObjectReader for S3ObjectReader {
    async fn read(&self, object: &ObjectRef, range: ByteRange) -> Result<Vec<u8>, ReadError> {
        let header = match range {
            ByteRange::Head(0) | ByteRange::Tail(0) => return Ok(Vec::new()),
            ByteRange::Head(n) => format!("bytes=0-{}", n - 1),
            ByteRange::Tail(n) => format!("bytes=-{n}"),
        };
        let mut request = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .range(header);
        request = match (&object.version_id, &object.etag) {
            (Some(version), _) => request.version_id(version),
            (None, Some(etag)) => request.if_match(format!("\"{etag}\"")),
            (None, None) => request,
        };
        let response = request.send().await.map_err(|e| classify(object, e))?;
        let body = response
            .body
            .collect()
            .await
            .map_err(|e| ReadError::Unavailable(Box::new(e)))?;
        Ok(body.into_bytes().to_vec())
    }

    /// `HeadObject` of the key (no version): its current version id (versioned buckets) or
    /// ETag must be the one the event named.
    async fn check_current(&self, object: &ObjectRef) -> Result<(), ReadError> {
        let head = self
            .client
            .head_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await;
        let head = match head {
            Ok(head) => head,
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 404 => {
                return Err(ReadError::NotFound(object.to_string()))
            }
            Err(e) => return Err(ReadError::Unavailable(Box::new(e))),
        };
        let current_etag = head.e_tag().map(|e| e.trim_matches('"'));
        let same = match (&object.version_id, &object.etag) {
            (Some(version), _) => head.version_id() == Some(version.as_str()),
            (None, Some(etag)) => current_etag == Some(etag.as_str()),
            (None, None) => head.content_length() == i64::try_from(object.size).ok(),
        };
        if same {
            Ok(())
        } else {
            Err(ReadError::Changed(object.to_string()))
        }
    }
}

fn classify(object: &ObjectRef, error: SdkError<GetObjectError>) -> ReadError {
    if let SdkError::ServiceError(service) = &error {
        let status = service.raw().status().as_u16();
        match (service.err(), service.err().code(), status) {
            (GetObjectError::NoSuchKey(_), _, _) | (_, Some("NoSuchVersion"), _) | (_, _, 404) => {
                return ReadError::NotFound(object.to_string())
            }
            (_, Some("PreconditionFailed"), _) | (_, _, 412) => {
                return ReadError::Changed(object.to_string())
            }
            _ => {}
        }
    }
    ReadError::Unavailable(Box::new(error))
}
