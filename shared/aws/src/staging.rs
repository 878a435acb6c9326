//! [`S3StripeStaging`]: lets RDS restore a striped backup set.
//!
//! RDS restores a striped set from one prefix ARN ending in `*` and reads every object under
//! that prefix. This decorator of a `RestoreTarget` gives it such a prefix for the stripes of a
//! multi-source request:
//!
//! - the stripes' own longest common key prefix, when a listing shows that nothing else lies
//!   under it (`Sales/Sales_full_1.bak`, `…_2.bak` → `arn:aws:s3:::<bucket>/Sales/Sales_full_*`):
//!   nothing is copied, whatever the stripes' size;
//! - otherwise server-side copies under `_bakdrop/stripes/<task name>/`, a prefix only they
//!   share (CopyObject: stripes up to 5 GiB). Copies are idempotent (same key for the same
//!   step), so a redelivered message re-copies harmlessly; they are deleted once the restore is
//!   recorded (`release_task`).
//!
//! `find_task` looks the task up by either prefix ARN. Single-source requests and non-S3 sources
//! pass through.

use aws_sdk_s3::error::SdkError;
use bakdrop_core::model::names::DatabaseName;
use bakdrop_core::model::object::STAGING_PREFIX;
use bakdrop_core::model::task::TaskId;
use bakdrop_core::ports::{Online, RestoreTarget, TargetError, TaskStatus};
use bakdrop_core::tsql::{RestoreRequest, RestoreSource, S3Arn};

/// The largest object one CopyObject request copies.
pub const MAX_SINGLE_COPY: i64 = 5 * 1024 * 1024 * 1024;

/// A target that stages striped sets in S3 before handing them to `inner`.
#[derive(Debug, Clone)]
pub struct S3StripeStaging<T> {
    s3: aws_sdk_s3::Client,
    inner: T,
}

impl<T> S3StripeStaging<T> {
    pub fn new(s3: aws_sdk_s3::Client, inner: T) -> S3StripeStaging<T> {
        S3StripeStaging { s3, inner }
    }
}

/// Where a striped request's stripes go.
#[derive(Debug, PartialEq, Eq)]
struct Staging {
    partition: String,
    bucket: String,
    /// (source key, staged key), in stripe order.
    copies: Vec<(String, String)>,
    /// What RDS restores from: every object under the staging prefix.
    arn: S3Arn,
}

/// The staged layout of a striped request; `None` when nothing needs staging.
fn plan(request: &RestoreRequest, task_name: &str) -> Option<Staging> {
    if request.sources.len() < 2 {
        return None;
    }
    let mut first: Option<&S3Arn> = None;
    let mut copies = Vec::new();
    let prefix = format!("{STAGING_PREFIX}stripes/{task_name}/");
    for (i, source) in request.sources.iter().enumerate() {
        let RestoreSource::S3Arn(object) = source else {
            return None;
        };
        let first = *first.get_or_insert(object);
        if object.prefix || (&object.partition, &object.bucket) != (&first.partition, &first.bucket)
        {
            return None;
        }
        let key = object.key.as_str();
        let name = key.rsplit('/').next().unwrap_or(key);
        copies.push((key.to_owned(), format!("{prefix}{:03}-{name}", i + 1)));
    }
    let first = first?;
    Some(Staging {
        partition: first.partition.clone(),
        bucket: first.bucket.clone(),
        copies,
        arn: S3Arn::under(&first.partition, &first.bucket, &prefix),
    })
}

/// The longest common prefix of `keys`, cut at a character boundary.
fn common_prefix(keys: &[&str]) -> String {
    let Some((first, rest)) = keys.split_first() else {
        return String::new();
    };
    let mut end = first.len();
    for key in rest {
        end = end.min(
            first
                .bytes()
                .zip(key.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    while !first.is_char_boundary(end) {
        end -= 1;
    }
    first[..end].to_owned()
}

/// The stripes' source keys of a staging plan.
fn stripe_keys(staging: &Staging) -> Vec<&str> {
    staging
        .copies
        .iter()
        .map(|(from, _)| from.as_str())
        .collect()
}

fn staged(request: &RestoreRequest, arn: S3Arn) -> RestoreRequest {
    RestoreRequest {
        sources: vec![RestoreSource::S3Arn(arn)],
        ..request.clone()
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: SdkError<E>) -> TargetError {
    TargetError::Connection(Box::new(e))
}

impl<T: RestoreTarget> S3StripeStaging<T> {
    /// The stripes' common prefix as an ARN, when no other object lies under it.
    async fn direct_arn(&self, staging: &Staging) -> Result<Option<S3Arn>, TargetError> {
        let keys = stripe_keys(staging);
        let prefix = common_prefix(&keys);
        let mut seen = 0;
        let mut token = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(&staging.bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(unavailable)?;
            for object in out.contents() {
                if !keys.contains(&object.key().unwrap_or_default()) {
                    return Ok(None);
                }
                seen += 1;
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(
            (seen == keys.len())
                .then(|| S3Arn::under(&staging.partition, &staging.bucket, &prefix)),
        )
    }

    /// Deletes the staged copies of the step `task_name` (none when it was restored in place).
    async fn delete_staged(&self, bucket: &str, task_name: &str) -> Result<(), TargetError> {
        let prefix = format!("{STAGING_PREFIX}stripes/{task_name}/");
        let out = self
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .send()
            .await
            .map_err(unavailable)?;
        for key in out.contents().iter().filter_map(|o| o.key()) {
            self.s3
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn copy(&self, bucket: &str, from: &str, to: &str) -> Result<(), TargetError> {
        let head = self
            .s3
            .head_object()
            .bucket(bucket)
            .key(from)
            .send()
            .await
            .map_err(unavailable)?;
        if head.content_length().unwrap_or(0) > MAX_SINGLE_COPY {
            return Err(TargetError::Protocol(format!(
                "stripe s3://{bucket}/{from} is larger than 5 GiB; staging such stripes for RDS is not implemented yet (restore it on SQL Server 2022 with the native dialect, or back up to more, smaller stripes)"
            )));
        }
        self.s3
            .copy_object()
            .bucket(bucket)
            .key(to)
            .copy_source(format!("{bucket}/{from}"))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

impl<T: RestoreTarget> RestoreTarget for S3StripeStaging<T> {
    async fn product_version(&self) -> Result<String, TargetError> {
        self.inner.product_version().await
    }

    async fn database_state(&self, database: &DatabaseName) -> Result<Option<String>, TargetError> {
        self.inner.database_state(database).await
    }

    async fn submit(
        &self,
        request: &RestoreRequest,
        task_name: &str,
    ) -> Result<TaskId, TargetError> {
        match plan(request, task_name) {
            None => self.inner.submit(request, task_name).await,
            Some(staging) => {
                if let Some(direct) = self.direct_arn(&staging).await? {
                    return self.inner.submit(&staged(request, direct), task_name).await;
                }
                for (from, to) in &staging.copies {
                    self.copy(&staging.bucket, from, to).await?;
                }
                self.inner
                    .submit(&staged(request, staging.arn), task_name)
                    .await
            }
        }
    }

    async fn find_task(
        &self,
        request: &RestoreRequest,
        task_name: &str,
    ) -> Result<Option<TaskId>, TargetError> {
        match plan(request, task_name) {
            None => self.inner.find_task(request, task_name).await,
            Some(staging) => {
                let direct = S3Arn::under(
                    &staging.partition,
                    &staging.bucket,
                    &common_prefix(&stripe_keys(&staging)),
                );
                match self
                    .inner
                    .find_task(&staged(request, direct), task_name)
                    .await?
                {
                    Some(task) => Ok(Some(task)),
                    None => {
                        self.inner
                            .find_task(&staged(request, staging.arn), task_name)
                            .await
                    }
                }
            }
        }
    }

    async fn poll(
        &self,
        database: &DatabaseName,
        task: &TaskId,
    ) -> Result<TaskStatus, TargetError> {
        self.inner.poll(database, task).await
    }

    async fn check_ready(&self, request: &RestoreRequest) -> Result<(), TargetError> {
        self.inner.check_ready(request).await
    }

    async fn bring_online(
        &self,
        database: &DatabaseName,
        task_name: &str,
    ) -> Result<Online, TargetError> {
        self.inner.bring_online(database, task_name).await
    }

    async fn cancel_task(&self, task: &TaskId) -> Result<(), TargetError> {
        self.inner.cancel_task(task).await
    }

    async fn release_task(
        &self,
        request: &RestoreRequest,
        task: &TaskId,
        task_name: &str,
    ) -> Result<(), TargetError> {
        if let Some(staging) = plan(request, task_name) {
            self.delete_staged(&staging.bucket, task_name).await?;
        }
        self.inner.release_task(request, task, task_name).await
    }

    async fn drop_database(&self, database: &DatabaseName) -> Result<(), TargetError> {
        self.inner.drop_database(database).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bakdrop_core::model::header::BackupKind;

    fn request(sources: Vec<RestoreSource>) -> RestoreRequest {
        RestoreRequest::new(
            DatabaseName::parse("Sales").expect("name"),
            BackupKind::Full,
            sources,
        )
    }

    #[test]
    fn stripes_are_staged_under_a_prefix_only_they_share() {
        let r = request(vec![
            RestoreSource::S3Arn(S3Arn::object("aws", "up", "Sales/a.bak")),
            RestoreSource::S3Arn(S3Arn::object("aws", "up", "Sales/b.bak")),
        ]);
        let Staging {
            partition,
            bucket,
            copies,
            arn,
        } = plan(&r, "bakdrop_Sales_full_x").expect("staged");
        assert_eq!((partition.as_str(), bucket.as_str()), ("aws", "up"));
        assert_eq!(
            copies,
            vec![
                (
                    "Sales/a.bak".to_owned(),
                    "_bakdrop/stripes/bakdrop_Sales_full_x/001-a.bak".to_owned()
                ),
                (
                    "Sales/b.bak".to_owned(),
                    "_bakdrop/stripes/bakdrop_Sales_full_x/002-b.bak".to_owned()
                ),
            ]
        );
        assert_eq!(
            arn.to_string(),
            "arn:aws:s3:::up/_bakdrop/stripes/bakdrop_Sales_full_x/*"
        );
        // Another partition's ARNs stay in it.
        let china = request(vec![
            RestoreSource::S3Arn(S3Arn::object("aws-cn", "up", "Sales/a.bak")),
            RestoreSource::S3Arn(S3Arn::object("aws-cn", "up", "Sales/b.bak")),
        ]);
        assert!(plan(&china, "t")
            .expect("staged")
            .arn
            .to_string()
            .starts_with("arn:aws-cn:s3:::up/_bakdrop/stripes/t/"));
    }

    #[test]
    fn the_common_prefix_of_stripe_keys_ends_where_they_differ_at_a_character_boundary() {
        assert_eq!(
            common_prefix(&["Sales/Sales_full_1.bak", "Sales/Sales_full_2.bak"]),
            "Sales/Sales_full_"
        );
        assert_eq!(common_prefix(&["Sales/a.bak", "Sales/b.bak"]), "Sales/");
        assert_eq!(common_prefix(&["x/ä1", "x/ä2", "x/äb"]), "x/ä");
        // 'é' (c3 a9) and 'è' (c3 a8) share a first byte: not a prefix of both as text.
        assert_eq!(common_prefix(&["x/é", "x/è"]), "x/");
        assert_eq!(common_prefix(&["a", "b"]), "");
        assert_eq!(common_prefix(&[]), "");
    }

    #[test]
    fn single_files_other_sources_and_mixed_buckets_pass_through() {
        assert!(plan(
            &request(vec![RestoreSource::S3Arn(S3Arn::object(
                "aws", "up", "a.bak"
            ))]),
            "t"
        )
        .is_none());
        assert!(plan(
            &request(vec![
                RestoreSource::Disk("/a".into()),
                RestoreSource::Disk("/b".into())
            ]),
            "t"
        )
        .is_none());
        assert!(plan(
            &request(vec![
                RestoreSource::S3Arn(S3Arn::object("aws", "one", "a.bak")),
                RestoreSource::S3Arn(S3Arn::object("aws", "two", "b.bak")),
            ]),
            "t"
        )
        .is_none());
    }
}
