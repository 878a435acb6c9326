//! Where the target reads a backup from, and what each way of reading allows.
//!
//! - Amazon RDS reads `arn:<partition>:s3:::bucket/key`; `*` and `?` in the object part are
//!   wildcards there (a striped set is restored from a prefix ending in `*`), and at most
//!   [`RDS_MAX_FILES`] files are read by one restore ("Importing and exporting SQL Server
//!   databases using native backup and restore", Limitations).
//! - SQL Server 2022 reads `s3://<endpoint>/<bucket>/<key>` (`RESTORE … FROM URL`) of at most
//!   [`MAX_URL_LENGTH`](crate::tsql::MAX_URL_LENGTH) characters from at most [`NATIVE_MAX_FILES`] URLs ("SQL Server
//!   backup to URL for S3-compatible object storage"), or a path on its own disk (local testing).
//!
//! Validation uses [`SourceLocation::check`] so that an upload the target could never read is
//! rejected before any restore, with its reason.

use std::fmt;

use crate::model::object::ObjectRef;
use crate::model::status::Reason;
use crate::tsql::{RestoreSource, S3Arn, S3Region, SourceError};

/// The most backup files one RDS restore reads.
pub const RDS_MAX_FILES: u32 = 10;
/// The most devices (URLs or disk files) one native `RESTORE` reads.
pub const NATIVE_MAX_FILES: u32 = 64;

/// Where the target reads backups from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceLocation {
    /// RDS reads `arn:<partition>:s3:::bucket/key`.
    S3Arn { partition: String },
    /// SQL Server 2022 reads `s3://<endpoint>/<bucket>/<key>` (`RESTORE … FROM URL`); `region`
    /// is the bucket's, when SQL Server must be told (it assumes `us-east-1`).
    Url {
        endpoint: String,
        region: Option<S3Region>,
    },
    /// The target reads `<directory>/<key>` from its own disk (local testing).
    Disk { directory: String },
}

/// The ARN partition of an AWS region: `aws-cn` for `cn-*`, `aws-us-gov` for `us-gov-*`, …,
/// `aws` for every other region (and when the region is unknown).
pub fn partition_of(region: Option<&str>) -> &'static str {
    let region = region.unwrap_or_default();
    [
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-iso-", "aws-iso"),
        ("eusc-", "aws-eusc"),
    ]
    .iter()
    .find(|(prefix, _)| region.starts_with(prefix))
    .map_or("aws", |(_, partition)| partition)
}

/// Why an upload cannot be restored from where the target reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceRefusal {
    #[error("the key contains {0:?}, which Amazon RDS reads as a wildcard in an S3 ARN (it would restore every object the pattern matches): rename the file without '*' or '?'")]
    WildcardInKey(char),
    #[error("the backup is striped over {families} files; {target} restores from at most {limit} files at once. Take the backup again to at most {limit} files")]
    TooManyFiles {
        families: u32,
        limit: u32,
        target: &'static str,
    },
    #[error("{0}")]
    Source(#[from] SourceError),
}

impl SourceRefusal {
    /// The rejection a DBA reads, with a stable code.
    pub fn reason(&self) -> Reason {
        let code = match self {
            SourceRefusal::WildcardInKey(_) => "WildcardInKey",
            SourceRefusal::TooManyFiles { .. } => "TooManyStripes",
            SourceRefusal::Source(SourceError::UrlTooLong { .. }) => "SourceUrlTooLong",
            SourceRefusal::Source(_) => "InvalidSource",
        };
        Reason::new(code, self.to_string())
    }
}

impl SourceLocation {
    /// RDS in `region` (the partition of the ARNs follows it).
    pub fn rds(region: Option<&str>) -> SourceLocation {
        SourceLocation::S3Arn {
            partition: partition_of(region).to_owned(),
        }
    }

    /// What the target reads for `object`.
    pub fn source(&self, object: &ObjectRef) -> RestoreSource {
        match self {
            SourceLocation::S3Arn { partition } => {
                RestoreSource::S3Arn(S3Arn::object(partition, &object.bucket, &object.key))
            }
            SourceLocation::Url { endpoint, .. } => RestoreSource::Url(format!(
                "s3://{}/{}/{}",
                endpoint.trim_end_matches('/'),
                object.bucket,
                object.key
            )),
            SourceLocation::Disk { directory } => RestoreSource::Disk(format!(
                "{}/{}",
                directory.trim_end_matches('/'),
                object.key
            )),
        }
    }

    /// The bucket's region for `RESTORE_OPTIONS`, for URL sources.
    pub fn s3_region(&self) -> Option<&S3Region> {
        match self {
            SourceLocation::Url { region, .. } => region.as_ref(),
            _ => None,
        }
    }

    /// Whether the target can read `object`, one file of a backup striped over `families`
    /// files.
    ///
    /// # Errors
    /// [`SourceRefusal`] naming what the target would refuse.
    pub fn check(&self, object: &ObjectRef, families: u32) -> Result<(), SourceRefusal> {
        let (limit, target) = match self {
            SourceLocation::S3Arn { .. } => (RDS_MAX_FILES, "Amazon RDS"),
            _ => (NATIVE_MAX_FILES, "SQL Server"),
        };
        if families > limit {
            return Err(SourceRefusal::TooManyFiles {
                families,
                limit,
                target,
            });
        }
        if let SourceLocation::S3Arn { .. } = self {
            if let Some(c) = object.key.chars().find(|c| matches!(c, '*' | '?')) {
                return Err(SourceRefusal::WildcardInKey(c));
            }
        }
        self.source(object).validate()?;
        Ok(())
    }
}

impl SourceLocation {
    /// The location from the settings a function reads: `SOURCE_LOCATION` (see
    /// [`FromStr`](std::str::FromStr)) for `dialect`, in AWS region `aws_region` (the partition
    /// of RDS ARNs; the bucket region of `s3://` URLs that name none, since the stack's bucket
    /// lives in the stack's region).
    ///
    /// # Errors
    /// A sentence naming what is missing or invalid.
    pub fn from_settings(
        dialect: crate::tsql::Dialect,
        source_location: Option<&str>,
        aws_region: Option<&str>,
    ) -> Result<SourceLocation, String> {
        let location = match (dialect, source_location) {
            (crate::tsql::Dialect::Rds, None) | (_, Some("arn")) => {
                return Ok(SourceLocation::rds(aws_region))
            }
            (_, Some(text)) => text.parse()?,
            (crate::tsql::Dialect::Native, None) => {
                return Err("SOURCE_LOCATION is not set: with TARGET_DIALECT=native give url:<s3 endpoint host>[;region=<bucket region>] or disk:<directory>".into())
            }
        };
        Ok(match location {
            SourceLocation::Url {
                endpoint,
                region: None,
            } => SourceLocation::Url {
                endpoint,
                region: aws_region.map(S3Region::parse).transpose()?,
            },
            other => other,
        })
    }
}

impl std::str::FromStr for SourceLocation {
    type Err = String;

    /// `arn` (partition `aws`; see [`SourceLocation::rds`]), `arn:<partition>`,
    /// `url:<s3 endpoint>[;region=<region>]` or `disk:<directory>`.
    fn from_str(text: &str) -> Result<SourceLocation, String> {
        let usage = || {
            format!("SOURCE_LOCATION {text:?}: use arn, url:<s3 endpoint host>[;region=<bucket region>] or disk:<directory>")
        };
        if text == "arn" {
            return Ok(SourceLocation::rds(None));
        }
        match text.split_once(':') {
            Some(("arn", partition))
                if !partition.is_empty()
                    && partition
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'-') =>
            {
                Ok(SourceLocation::S3Arn {
                    partition: partition.to_owned(),
                })
            }
            Some(("url", rest)) if !rest.is_empty() => {
                let (endpoint, region) = match rest.split_once(";region=") {
                    Some((endpoint, region)) => (endpoint, Some(S3Region::parse(region)?)),
                    None => (rest, None),
                };
                if endpoint.is_empty() {
                    return Err(usage());
                }
                Ok(SourceLocation::Url {
                    endpoint: endpoint.to_owned(),
                    region,
                })
            }
            Some(("disk", directory)) if !directory.is_empty() => Ok(SourceLocation::Disk {
                directory: directory.to_owned(),
            }),
            _ => Err(usage()),
        }
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceLocation::S3Arn { partition } => write!(f, "arn:{partition}"),
            SourceLocation::Url {
                endpoint,
                region: Some(region),
            } => write!(f, "url:{endpoint};region={region}"),
            SourceLocation::Url { endpoint, .. } => write!(f, "url:{endpoint}"),
            SourceLocation::Disk { directory } => write!(f, "disk:{directory}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsql::MAX_URL_LENGTH;

    fn object(key: &str) -> ObjectRef {
        ObjectRef {
            bucket: "uploads".into(),
            key: key.into(),
            version_id: None,
            etag: None,
            size: 1,
        }
    }

    #[test]
    fn rds_arns_carry_the_partition_of_the_region() {
        let cases = [
            (None, "arn:aws:s3:::uploads/Sales/f.bak"),
            (Some("eu-west-1"), "arn:aws:s3:::uploads/Sales/f.bak"),
            (Some("cn-north-1"), "arn:aws-cn:s3:::uploads/Sales/f.bak"),
            (
                Some("us-gov-west-1"),
                "arn:aws-us-gov:s3:::uploads/Sales/f.bak",
            ),
            (
                Some("eusc-de-east-1"),
                "arn:aws-eusc:s3:::uploads/Sales/f.bak",
            ),
        ];
        for (region, arn) in cases {
            let source = SourceLocation::rds(region).source(&object("Sales/f.bak"));
            assert_eq!(source.text(), arn, "{region:?}");
            let RestoreSource::S3Arn(parts) = source else {
                panic!("{region:?}: not an ARN");
            };
            assert_eq!(
                (parts.bucket.as_str(), parts.key.as_str(), parts.prefix),
                ("uploads", "Sales/f.bak", false),
                "{region:?}"
            );
        }
    }

    #[test]
    fn s3_sources_keep_their_parts_and_render_the_arn_rds_reads() {
        let one = S3Arn::object("aws-cn", "up", "Sales/a.bak");
        let under = S3Arn::under("aws", "up", ".bakdrop/stripes/t/");
        assert_eq!(one.to_string(), "arn:aws-cn:s3:::up/Sales/a.bak");
        assert_eq!(under.to_string(), "arn:aws:s3:::up/.bakdrop/stripes/t/*");
        assert_eq!(
            RestoreSource::S3Arn(under).text(),
            "arn:aws:s3:::up/.bakdrop/stripes/t/*"
        );
    }

    #[test]
    fn rds_refuses_keys_with_wildcards_and_more_than_ten_stripes() {
        let rds = SourceLocation::rds(None);
        assert!(rds.check(&object("Sales/f.bak"), 1).is_ok());
        for key in ["Sales/f*.bak", "Sales/f?.bak"] {
            let refusal = rds.check(&object(key), 1).expect_err(key);
            assert_eq!(refusal.reason().code, "WildcardInKey");
        }
        assert!(rds.check(&object("Sales/f.bak"), 10).is_ok());
        assert_eq!(
            rds.check(&object("Sales/f.bak"), 11)
                .expect_err("11")
                .reason()
                .code,
            "TooManyStripes"
        );
        let url = SourceLocation::Url {
            endpoint: "s3.amazonaws.com".into(),
            region: None,
        };
        assert!(url.check(&object("Sales/f*.bak"), 64).is_ok());
        assert!(url.check(&object("Sales/f.bak"), 65).is_err());
    }

    #[test]
    fn urls_over_the_limit_are_refused_with_their_length() {
        let url = SourceLocation::Url {
            endpoint: "s3.eu-west-1.amazonaws.com".into(),
            region: None,
        };
        // s3:// (5) + endpoint (26) + / + uploads (7) + / = 40 characters before the key.
        let fits = object(&format!("Sales/{}", "k".repeat(MAX_URL_LENGTH - 40 - 6)));
        assert!(url.check(&fits, 1).is_ok());
        let long = object(&format!("Sales/{}", "k".repeat(MAX_URL_LENGTH - 40 - 5)));
        let reason = url.check(&long, 1).expect_err("too long").reason();
        assert_eq!(reason.code, "SourceUrlTooLong");
        assert!(
            reason.message.contains("260 characters"),
            "{}",
            reason.message
        );
    }

    #[test]
    fn settings_fill_the_partition_and_the_bucket_region_from_the_functions_region() {
        use crate::tsql::Dialect;
        assert_eq!(
            SourceLocation::from_settings(Dialect::Rds, None, Some("cn-north-1")),
            Ok(SourceLocation::S3Arn {
                partition: "aws-cn".into()
            })
        );
        let url = SourceLocation::from_settings(
            Dialect::Native,
            Some("url:s3.eu-west-1.amazonaws.com"),
            Some("eu-west-1"),
        )
        .expect("url");
        assert_eq!(url.s3_region().map(S3Region::as_str), Some("eu-west-1"));
        let given = SourceLocation::from_settings(
            Dialect::Native,
            Some("url:minio:9000;region=us-east-1"),
            Some("eu-west-1"),
        )
        .expect("url");
        assert_eq!(given.s3_region().map(S3Region::as_str), Some("us-east-1"));
        assert!(SourceLocation::from_settings(Dialect::Native, None, None).is_err());
    }

    #[test]
    fn locations_parse_from_settings_and_print_back() {
        for text in [
            "arn:aws",
            "arn:aws-cn",
            "url:s3.eu-west-1.amazonaws.com",
            "url:minio:9000;region=eu-west-1",
            "disk:/var/opt/mssql/backup",
        ] {
            let location: SourceLocation = text.parse().expect(text);
            assert_eq!(location.to_string(), text);
        }
        assert_eq!(
            "arn".parse::<SourceLocation>(),
            Ok(SourceLocation::rds(None))
        );
        for bad in ["", "url:", "ftp:x", "url:h;region=EU WEST", "arn:AWS"] {
            assert!(bad.parse::<SourceLocation>().is_err(), "{bad}");
        }
    }
}
