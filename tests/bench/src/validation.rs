//! Validation cost versus object size (figure 1): objects of each size in the local S3, each a
//! real backup's head and tail around a zero filler ([`Spliced`]), uploaded by multipart upload
//! (filler parts are server-side copies of one filler object). Per size it measures, interleaved
//! run by run:
//! - one validation: `Validator::validate` with the real S3 reader (wrapped to count bytes) and
//!   the status store and queue in memory (their cost does not depend on the object's size; the
//!   throughput figure covers them against the local endpoint);
//! - one 64 KiB ranged GET of the same object (`bytes=-65536`, as validation's tail read);
//! - one 64 KiB ranged GET of a 64 KiB object on the same endpoint (the endpoint's floor);
//! - one 1 MiB ranged GET of the object (validation's head read alone);
//! - the naive approach: downloading the whole object (fewer runs: it is slow).
//!
//! Each is measured on moto and on a range-honest loopback endpoint ([`RangeEndpoint`]) serving
//! the same bytes: moto's cost per request grows with the object's size whatever the range.
//! Everything it creates on moto lives in one fresh bucket, deleted at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bakdrop_aws::s3::S3ObjectReader;
use bakdrop_core::backup::{HEAD_LIMIT, TAIL_LIMIT};
use bakdrop_core::model::object::ObjectRef;
use bakdrop_core::model::version::VersionPolicy;
use bakdrop_core::ports::fakes::{MemoryQueue, MemoryStore};
use bakdrop_core::ports::{ByteRange, ObjectReader, ReadError};
use bakdrop_core::validate::{Outcome, ValidateConfig, Validator};
use bakdrop_test_support::aws::{unique_name, LocalAws};

use crate::endpoint::RangeEndpoint;
use crate::splice::Spliced;
use crate::stats::{self, Samples};
use crate::{cleanup, fixtures};

const MIB: u64 = 1 << 20;
/// The filler object copied into big objects part by part.
const FILLER_PART: u64 = 64 * MIB;
/// Objects up to this size are uploaded in one PUT.
const SINGLE_PUT_LIMIT: u64 = 64 * MIB;
/// The backup used when it fits in the object: the 2016 full (2.41 MiB).
const LARGE_BACKUP: &str = "sql2016_full_RestoreTimeClean.bak";
/// The backup used, unmodified, for smaller sizes: the real full closest to 1 MiB among those
/// that extend past validation's head and tail reads (1.40 MiB; see [`crate::splice`]).
const SMALL_BACKUP: &str = "sql2008r2_full_singlerestore.bak";
/// The backups the objects are made of.
pub const BACKUPS: [&str; 2] = [LARGE_BACKUP, SMALL_BACKUP];

/// What to measure.
#[derive(Debug, Clone)]
pub struct ValidationPlan {
    pub sizes: Vec<u64>,
    pub runs: usize,
    pub download_runs: usize,
    /// Held back before each response of the range-honest endpoint (0: none).
    pub first_byte_latency: Duration,
}

/// One endpoint's timings for one object.
#[derive(Debug, Clone, Default)]
pub struct EndpointFigure {
    pub validation: Samples,
    pub get_64k_same_object: Samples,
    pub get_64k_small_object: Samples,
    /// Validation's head read alone (1 MiB).
    pub get_1m_same_object: Samples,
    pub download: Samples,
}

/// One size's figure.
#[derive(Debug, Clone)]
pub struct ValidationFigure {
    pub size: u64,
    pub backup: &'static str,
    /// Bytes the reader handed out per validation (the same every run, else the maximum).
    pub bytes_read: u64,
    /// Ranged GETs per validation.
    pub reads: u64,
    pub upload_time: Duration,
    /// On the local endpoint (moto).
    pub moto: EndpointFigure,
    /// On the range-honest loopback endpoint ([`RangeEndpoint`]).
    pub ranged: EndpointFigure,
}

/// Counts the bytes and reads the S3 reader hands out.
#[derive(Debug, Clone)]
struct Counting {
    inner: S3ObjectReader,
    bytes: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
}

impl ObjectReader for Counting {
    async fn read(&self, object: &ObjectRef, range: ByteRange) -> Result<Vec<u8>, ReadError> {
        let bytes = self.inner.read(object, range).await?;
        self.bytes.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(bytes)
    }

    async fn check_current(&self, object: &ObjectRef) -> Result<(), ReadError> {
        self.inner.check_current(object).await
    }
}

/// An endpoint and the two objects measured on it.
struct Side {
    client: aws_sdk_s3::Client,
    object: ObjectRef,
    small: ObjectRef,
}

/// Runs the plan in a fresh bucket and deletes it afterwards.
///
/// # Errors
/// When the endpoint refuses, or a validation does not end queued.
pub async fn run(aws: &LocalAws, plan: &ValidationPlan) -> anyhow::Result<Vec<ValidationFigure>> {
    let bucket = unique_name("bench-validation");
    aws.s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .context("creating the benchmark bucket")?;
    let result = measure(aws, &bucket, plan).await;
    cleanup::bucket(aws, &bucket).await;
    result
}

async fn measure(
    aws: &LocalAws,
    bucket: &str,
    plan: &ValidationPlan,
) -> anyhow::Result<Vec<ValidationFigure>> {
    let endpoint = RangeEndpoint::start_with_latency(plan.first_byte_latency)
        .await
        .context("starting the range-honest endpoint")?;
    let ranged_client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&aws.sdk)
            .endpoint_url(endpoint.url())
            .force_path_style(true)
            .build(),
    );
    let floor = vec![0x5a; TAIL_LIMIT];
    let small = put(aws, bucket, "floor/64k", floor.clone()).await?;
    let ranged_small = endpoint.insert(
        bucket,
        "floor/64k",
        Spliced::new(&floor, floor.len() as u64)?,
    );
    let mut figures = Vec::new();
    let mut filler: Option<String> = None;
    for &size in &plan.sizes {
        let large = fixtures::read(LARGE_BACKUP)?;
        let (name, real) = if large.len() as u64 <= size {
            (LARGE_BACKUP, large)
        } else {
            (SMALL_BACKUP, fixtures::read(SMALL_BACKUP)?)
        };
        // Below the small backup's own size, the object is that backup, unmodified.
        let size = size.max(real.len() as u64);
        let spliced = Spliced::new(&real, size)?;
        let key = format!("Bench{size}/{name}");
        let started = Instant::now();
        let object = if size <= SINGLE_PUT_LIMIT {
            put(aws, bucket, &key, spliced.slice(0, size)).await?
        } else {
            let filler_key = match &filler {
                Some(k) => k.clone(),
                None => {
                    let k = "filler/zeros".to_owned();
                    put(aws, bucket, &k, vec![0; FILLER_PART as usize]).await?;
                    filler = Some(k.clone());
                    k
                }
            };
            multipart(aws, bucket, &key, &spliced, &filler_key).await?
        };
        let upload_time = started.elapsed();
        eprintln!(
            "validation: {} object s3://{bucket}/{key} uploaded in {}",
            stats::bytes(size),
            stats::duration(upload_time)
        );
        let moto = Side {
            client: aws.s3.clone(),
            object,
            small: small.clone(),
        };
        let ranged = Side {
            client: ranged_client.clone(),
            object: endpoint.insert(bucket, &key, spliced),
            small: ranged_small.clone(),
        };
        let mut figure = ValidationFigure {
            size,
            backup: name,
            bytes_read: 0,
            reads: 0,
            upload_time,
            moto: EndpointFigure::default(),
            ranged: EndpointFigure::default(),
        };
        for run in 0..plan.runs {
            for (side, timings) in [(&moto, &mut figure.moto), (&ranged, &mut figure.ranged)] {
                let (took, bytes, reads) = validate_once(&side.client, &side.object, run).await?;
                timings.validation.push(took);
                figure.bytes_read = figure.bytes_read.max(bytes);
                figure.reads = figure.reads.max(reads);
                let reader = S3ObjectReader::new(side.client.clone());
                let started = Instant::now();
                let tail = reader
                    .read(&side.object, ByteRange::Tail(TAIL_LIMIT as u64))
                    .await?;
                timings.get_64k_same_object.push(started.elapsed());
                if tail.len() != TAIL_LIMIT {
                    bail!("the 64 KiB ranged GET returned {} bytes", tail.len());
                }
                let started = Instant::now();
                reader
                    .read(&side.small, ByteRange::Tail(TAIL_LIMIT as u64))
                    .await?;
                timings.get_64k_small_object.push(started.elapsed());
                let started = Instant::now();
                reader
                    .read(&side.object, ByteRange::Head(HEAD_LIMIT as u64))
                    .await?;
                timings.get_1m_same_object.push(started.elapsed());
            }
        }
        for (side, timings) in [(&moto, &mut figure.moto), (&ranged, &mut figure.ranged)] {
            for _ in 0..plan.download_runs {
                let started = Instant::now();
                let downloaded = download(&side.client, &side.object).await?;
                timings.download.push(started.elapsed());
                if downloaded != size {
                    bail!("downloaded {downloaded} bytes of a {size}-byte object");
                }
            }
        }
        endpoint.remove(bucket, &key);
        if let Err(e) = aws.s3.delete_object().bucket(bucket).key(&key).send().await {
            eprintln!("validation: deleting {key} failed: {e}");
        }
        figures.push(figure);
    }
    Ok(figures)
}

/// One validation with fresh in-memory records; returns its time, bytes read and reads.
async fn validate_once(
    client: &aws_sdk_s3::Client,
    object: &ObjectRef,
    run: usize,
) -> anyhow::Result<(Duration, u64, u64)> {
    let bytes = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let validator = Validator {
        reader: Counting {
            inner: S3ObjectReader::new(client.clone()),
            bytes: bytes.clone(),
            reads: reads.clone(),
        },
        store: MemoryStore::default(),
        queue: MemoryQueue::default(),
        config: ValidateConfig {
            arm_by_upload: false,
            target: Some("2022".parse()?),
            policy: VersionPolicy::NotNewer,
            location: bakdrop_core::tsql::source::SourceLocation::rds(None),
        },
    };
    let started = Instant::now();
    let outcome = validator
        .validate(
            object,
            &format!("bench-{run}"),
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    let took = started.elapsed();
    if !matches!(outcome, Outcome::Queued { .. }) {
        bail!("validation of {object} did not queue it: {outcome:?}");
    }
    Ok((
        took,
        bytes.load(Ordering::SeqCst),
        reads.load(Ordering::SeqCst),
    ))
}

async fn put(aws: &LocalAws, bucket: &str, key: &str, body: Vec<u8>) -> anyhow::Result<ObjectRef> {
    aws.put_object(bucket, key, body)
        .await
        .with_context(|| format!("putting {key}"))
}

/// Uploads `spliced` as: one part holding the backup's front and the first zeros, server-side
/// copies of the filler object, and the backup's tail as the last part.
async fn multipart(
    aws: &LocalAws,
    bucket: &str,
    key: &str,
    spliced: &Spliced,
    filler_key: &str,
) -> anyhow::Result<ObjectRef> {
    let size = spliced.size();
    let back = spliced.back.len() as u64;
    // The first part is at least 8 MiB (S3's minimum part is 5 MiB) and holds the front.
    let copies = (size - back - 8 * MIB) / FILLER_PART;
    let first_len = size - back - copies * FILLER_PART;
    if first_len < spliced.front.len() as u64 {
        bail!("the first part would not hold the backup's front");
    }
    let upload = aws
        .s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .context("CreateMultipartUpload")?;
    let upload_id = upload
        .upload_id()
        .context("CreateMultipartUpload answered without an upload id")?
        .to_owned();
    let mut parts = Vec::new();
    let first = aws
        .s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .part_number(1)
        .body(ByteStream::from(spliced.slice(0, first_len)))
        .send()
        .await
        .context("UploadPart 1")?;
    parts.push(
        CompletedPart::builder()
            .part_number(1)
            .set_e_tag(first.e_tag().map(str::to_owned))
            .build(),
    );
    let mut number = 2;
    for _ in 0..copies {
        let copied = aws
            .s3
            .upload_part_copy()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(number)
            .copy_source(format!("{bucket}/{filler_key}"))
            .send()
            .await
            .with_context(|| format!("UploadPartCopy {number}"))?;
        let etag = copied
            .copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_owned);
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(etag)
                .build(),
        );
        number += 1;
    }
    let last = aws
        .s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .part_number(number)
        .body(ByteStream::from(spliced.back.clone()))
        .send()
        .await
        .context("UploadPart (tail)")?;
    parts.push(
        CompletedPart::builder()
            .part_number(number)
            .set_e_tag(last.e_tag().map(str::to_owned))
            .build(),
    );
    let done = aws
        .s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .context("CompleteMultipartUpload")?;
    let head = aws
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .context("HeadObject")?;
    let stored = head.content_length().unwrap_or_default() as u64;
    if stored != size {
        bail!("the uploaded object has {stored} bytes, not {size}");
    }
    Ok(ObjectRef {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: None,
        etag: done
            .e_tag()
            .or(head.e_tag())
            .map(|e| e.trim_matches('"').to_owned()),
        size,
    })
}

/// Downloads the whole object, streaming (nothing kept); returns the byte count.
async fn download(client: &aws_sdk_s3::Client, object: &ObjectRef) -> anyhow::Result<u64> {
    let mut body = client
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .send()
        .await
        .context("GetObject")?
        .body;
    let mut total = 0u64;
    while let Some(chunk) = body.try_next().await.context("reading the object")? {
        total += chunk.len() as u64;
    }
    Ok(total)
}

/// The figures as Markdown: bytes read, then one table per endpoint.
pub fn table(figures: &[ValidationFigure], first_byte_latency: Duration) -> String {
    let ranged_title = if first_byte_latency.is_zero() {
        "range-honest loopback endpoint (serves a range in time proportional to its length)"
            .to_owned()
    } else {
        format!(
            "range-honest loopback endpoint, every response held back {} before its first byte (a modelled network round trip, not a measured S3 latency)",
            stats::duration(first_byte_latency)
        )
    };
    let mut out = String::from(
        "| object | backup inside | bytes read per validation (ranged GETs) | upload to moto |\n\
         |---:|---|---:|---:|\n",
    );
    for f in figures {
        out.push_str(&format!(
            "| {} | {} | {} ({}) | {} |\n",
            stats::bytes(f.size),
            f.backup,
            stats::bytes(f.bytes_read),
            f.reads,
            stats::duration(f.upload_time)
        ));
    }
    for (title, pick) in [
        (
            "moto (the project's local endpoint; copies the whole object for every ranged GET)"
                .to_owned(),
            (|f: &ValidationFigure| &f.moto) as fn(&ValidationFigure) -> &EndpointFigure,
        ),
        (ranged_title, |f: &ValidationFigure| &f.ranged),
    ] {
        out.push_str(&format!(
            "\n{title}:\n\n\
             | object | one validation | 64 KiB GET, same object | 64 KiB GET, 64 KiB object | 1 MiB GET, same object | validation ÷ 64 KiB GET (same object / 64 KiB object) | whole download | download ÷ validation |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|\n"
        ));
        for f in figures {
            let e = pick(f);
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.2} / {:.2} | {} | {:.1} |\n",
                stats::bytes(f.size),
                e.validation.summary(),
                e.get_64k_same_object.summary(),
                e.get_64k_small_object.summary(),
                e.get_1m_same_object.summary(),
                stats::ratio(e.validation.median(), e.get_64k_same_object.median()),
                stats::ratio(e.validation.median(), e.get_64k_small_object.median()),
                e.download.summary(),
                stats::ratio(e.download.median(), e.validation.median()),
            ));
        }
    }
    out
}
