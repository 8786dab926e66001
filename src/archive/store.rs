//! The S3 side: a thin wrapper over `aws-sdk-s3` with the settings every call needs (bucket,
//! server-side encryption, Object Lock) and errors that carry the key. The SDK retries transient
//! failures itself (standard mode); [`crate::retry`] adds a second layer around each part.

use crate::archive::retrieval::Tier;
use crate::archive::settings::{ArchiveSettings, Sse};
use crate::retry::{retry, RetryPolicy};
use anyhow::{anyhow, Context};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, GlacierJobParameters, ObjectLockMode,
    RestoreRequest, ServerSideEncryption,
};
use base64::Engine;
use bytes::Bytes;

#[derive(Clone)]
pub struct Store {
    pub client: aws_sdk_s3::Client,
    pub settings: ArchiveSettings,
}

#[derive(Debug, Clone, Default)]
pub struct ObjectHead {
    pub size: i64,
    pub checksum_sha256: Option<String>,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    /// `None` for STANDARD (S3 omits the header), else the class as S3 names it.
    pub storage_class: Option<String>,
    /// The `x-amz-restore` header of an archived object: `ongoing-request="true"` while a
    /// retrieval runs, `ongoing-request="false", expiry-date="..."` once a copy is readable.
    pub restore: Option<String>,
    /// INTELLIGENT_TIERING's archive tier (`ARCHIVE_ACCESS`, `DEEP_ARCHIVE_ACCESS`), if any.
    pub archive_status: Option<String>,
    /// User metadata (`x-amz-meta-*`, without the prefix).
    pub metadata: std::collections::HashMap<String, String>,
}

/// The outcome of a write-once (`If-None-Match: *`) write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOnce<T> {
    Written(T),
    /// The key already holds an object: nothing was written.
    Exists,
}

impl<T> WriteOnce<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> WriteOnce<U> {
        match self {
            WriteOnce::Written(t) => WriteOnce::Written(f(t)),
            WriteOnce::Exists => WriteOnce::Exists,
        }
    }
}

/// Object metadata every data object carries (`x-amz-meta-pa-*`): who wrote it, and the token of
/// the upload attempt that did, so a later run can tell its own earlier upload from another's.
#[derive(Debug, Clone)]
pub struct Origin {
    pub upload_token: String,
    pub system_identifier: Option<String>,
    /// `schema.table/partition`.
    pub source: String,
}

/// A fresh upload token (128 random bits, hex) for [`Origin::upload_token`].
pub fn new_upload_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

pub const META_UPLOAD_TOKEN: &str = "pa-upload-token";
pub const META_SYSTEM_IDENTIFIER: &str = "pa-system-identifier";
pub const META_SOURCE: &str = "pa-source";
/// The tag every data object gets at upload (and manifests do not), so a lifecycle rule can move
/// data to cold storage while manifests stay readable at once (template.yaml, `cold-storage`).
pub const DATA_TAG: (&str, &str) = ("partition-archiver-kind", "data");
/// The tag a chunk object of a superseded plan gets before it leaves the listing: the template's
/// IAM lets the function delete (add a delete marker to) only objects that carry it.
pub const SUPERSEDED_TAG: (&str, &str) = ("partition-archiver-kind", "superseded");

/// The S3 error code of an SDK error, if S3 answered with one.
fn error_code<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> Option<&str>
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    match e {
        aws_sdk_s3::error::SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// Attempts of a write-once request that meets a ConditionalRequestConflict.
const CONFLICT_ATTEMPTS: u32 = 4;

/// Sends a write-once (`If-None-Match: *`) request: 412 PreconditionFailed means the key already
/// holds an object ([`WriteOnce::Exists`]). A 409 ConditionalRequestConflict (another conditional
/// write to the key was in flight) is retried when `retry_conflict` (a PutObject: the retry ends
/// written or as a 412); a CompleteMultipartUpload cannot be retried after one (S3 wants a new
/// upload), so its 409 is returned as an error and the next run uploads again.
async fn write_once<T, E, R, Fut>(
    retry_conflict: bool,
    mut send: impl FnMut() -> Fut,
) -> Result<WriteOnce<T>, aws_sdk_s3::error::SdkError<E, R>>
where
    Fut: std::future::Future<Output = Result<T, aws_sdk_s3::error::SdkError<E, R>>>,
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    let mut attempt = 1;
    loop {
        match send().await {
            Ok(written) => return Ok(WriteOnce::Written(written)),
            Err(e) if error_code(&e) == Some("PreconditionFailed") => return Ok(WriteOnce::Exists),
            Err(e)
                if retry_conflict
                    && error_code(&e) == Some("ConditionalRequestConflict")
                    && attempt < CONFLICT_ATTEMPTS =>
            {
                tokio::time::sleep(RetryPolicy::default().delay(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Metadata values are ASCII: non-ASCII names (and `%`) are percent-encoded.
fn metadata_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'%' || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An S3 request that failed after the SDK's own retries (throttled, a server error, a timeout,
/// the connection, expired credentials): the way to an object failed, not its bytes. Typed, so a
/// restore keeps what it has loaded when one fails ([`crate::archive::pipeline::load_failure`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct S3Failure(pub String);

pub fn sdk_err<E: std::error::Error + Send + Sync + 'static>(e: aws_sdk_s3::error::SdkError<E>) -> anyhow::Error {
    // DisplayErrorContext prints the whole chain (service code and message), not just "service error".
    anyhow::Error::new(S3Failure(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))
}

impl Store {
    /// Builds the S3 client from the SDK's usual sources (`AWS_REGION`, credential chain,
    /// `AWS_ENDPOINT_URL`); path-style addressing when a custom endpoint is set (LocalStack, MinIO).
    pub async fn connect(settings: ArchiveSettings) -> Self {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        // We check every object's SHA-256 ourselves; the SDK cannot validate the part-level
        // checksums of multipart objects on GET and would only warn about it.
        let t = settings.s3_timeouts;
        let mut builder = aws_sdk_s3::config::Builder::from(&sdk)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(t.connect)
                    .read_timeout(t.read)
                    .operation_attempt_timeout(t.attempt)
                    .build(),
            );
        if std::env::var_os("AWS_ENDPOINT_URL").is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() {
            builder = builder.force_path_style(true);
        }
        Self { client: aws_sdk_s3::Client::from_conf(builder.build()), settings }
    }

    fn bucket(&self) -> &str {
        &self.settings.bucket
    }

    /// Starts the multipart upload of a data object, with its [`Origin`] as metadata and the data
    /// tag.
    pub async fn create_upload(&self, key: &str, content_type: &str, origin: &Origin) -> anyhow::Result<String> {
        let mut req = self
            .client
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(key)
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .metadata(META_UPLOAD_TOKEN, &origin.upload_token)
            .metadata(META_SOURCE, metadata_value(&origin.source))
            .tagging(format!("{}={}", DATA_TAG.0, DATA_TAG.1));
        if let Some(id) = &origin.system_identifier {
            req = req.metadata(META_SYSTEM_IDENTIFIER, id);
        }
        let (sse, kms_key) = self.encryption();
        req = req.server_side_encryption(sse).set_ssekms_key_id(kms_key);
        if let Some(lock) = &self.settings.object_lock {
            let until = chrono::Utc::now() + chrono::Duration::days(lock.days as i64);
            req = req
                .object_lock_mode(ObjectLockMode::from(lock.mode.as_str()))
                .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(until.timestamp()));
        }
        let out = req
            .send()
            .await
            .map_err(sdk_err)
            .with_context(|| format!("start multipart upload of s3://{}/{key}", self.bucket()))?;
        out.upload_id.ok_or_else(|| anyhow!("S3 returned no upload id for {key}"))
    }

    /// Every object's server-side encryption, and the KMS key (none: the bucket's default key).
    fn encryption(&self) -> (ServerSideEncryption, Option<String>) {
        match &self.settings.sse {
            Sse::Aes256 => (ServerSideEncryption::Aes256, None),
            Sse::Kms { key_id } => (ServerSideEncryption::AwsKms, key_id.clone()),
        }
    }

    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
        sha256: &[u8; 32],
    ) -> anyhow::Result<String> {
        crate::fail_point!("upload_part", Err(anyhow!("injected fault: upload_part failed")));
        let checksum = base64::engine::general_purpose::STANDARD.encode(sha256);
        let (r, _) = retry(
            RetryPolicy::default(),
            "upload part",
            |_: &anyhow::Error| true,
            |_| {
                let (data, checksum) = (data.clone(), checksum.clone());
                async move {
                    let out = self
                        .client
                        .upload_part()
                        .bucket(self.bucket())
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .checksum_algorithm(ChecksumAlgorithm::Sha256)
                        .checksum_sha256(checksum)
                        .body(ByteStream::from(data))
                        .send()
                        .await
                        .map_err(sdk_err)?;
                    out.e_tag.ok_or_else(|| anyhow!("no ETag for part {number}"))
                }
            },
        )
        .await;
        r.with_context(|| format!("upload part {number} of s3://{}/{key}", self.bucket()))
    }

    /// Completes the upload unless the key already holds an object (`If-None-Match: *`: an archive
    /// is never replaced); returns (ETag, version id).
    pub async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String, String)],
    ) -> anyhow::Result<WriteOnce<(Option<String>, Option<String>)>> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(n, etag, sha)| {
                        CompletedPart::builder().part_number(*n).e_tag(etag).checksum_sha256(sha).build()
                    })
                    .collect(),
            ))
            .build();
        write_once(false, || {
            self.client
                .complete_multipart_upload()
                .bucket(self.bucket())
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(completed.clone())
                .if_none_match("*")
                .send()
        })
        .await
        .map(|w| w.map(|out| (out.e_tag, out.version_id)))
        .map_err(sdk_err)
        .with_context(|| format!("complete multipart upload of s3://{}/{key}", self.bucket()))
    }

    /// Aborts a multipart upload; an upload that no longer exists is not an error.
    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> anyhow::Result<()> {
        let (r, _) = retry(
            RetryPolicy::default(),
            "abort upload",
            |_: &anyhow::Error| true,
            |_| async {
                match self
                    .client
                    .abort_multipart_upload()
                    .bucket(self.bucket())
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_upload()) => Ok(()),
                    Err(e) => Err(sdk_err(e)),
                }
            },
        )
        .await;
        r.with_context(|| format!("abort multipart upload of s3://{}/{key}", self.bucket()))
    }

    /// Takes a superseded chunk object out of the listing: tags it [`SUPERSEDED_TAG`], then deletes
    /// its latest version (in a versioned bucket: a delete marker, so the version stays
    /// recoverable). Only for an object this tool wrote and no manifest records as part of an archive.
    pub async fn hide_superseded(&self, key: &str, version_id: Option<&str>) -> anyhow::Result<()> {
        let tag = aws_sdk_s3::types::Tag::builder().key(SUPERSEDED_TAG.0).value(SUPERSEDED_TAG.1).build()?;
        self.client
            .put_object_tagging()
            .bucket(self.bucket())
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .tagging(aws_sdk_s3::types::Tagging::builder().tag_set(tag).build()?)
            .send()
            .await
            .map_err(sdk_err)
            .with_context(|| format!("tag s3://{}/{key} superseded", self.bucket()))?;
        self.client
            .delete_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
            .map_err(sdk_err)
            .with_context(|| format!("delete s3://{}/{key}", self.bucket()))?;
        Ok(())
    }

    /// Aborts every unfinished multipart upload of `key` (left by a run that was killed).
    pub async fn abort_uploads_of(&self, key: &str) -> anyhow::Result<()> {
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(self.bucket())
            .prefix(key)
            .send()
            .await
            .map_err(sdk_err)
            .with_context(|| format!("list multipart uploads of s3://{}/{key}", self.bucket()))?;
        for u in out.uploads() {
            if let (Some(id), true) = (u.upload_id(), u.key() == Some(key)) {
                self.abort_upload(key, id).await?;
            }
        }
        Ok(())
    }

    pub async fn head(&self, key: &str, version_id: Option<&str>) -> anyhow::Result<Option<ObjectHead>> {
        match self
            .client
            .head_object()
            .bucket(self.bucket())
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(h) => Ok(Some(ObjectHead {
                size: h.content_length.unwrap_or(-1),
                checksum_sha256: h.checksum_sha256,
                version_id: h.version_id,
                etag: h.e_tag,
                storage_class: h.storage_class.map(|c| c.as_str().to_string()),
                restore: h.restore,
                archive_status: h.archive_status.map(|a| a.as_str().to_string()),
                metadata: h.metadata.unwrap_or_default(),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(sdk_err(e)).with_context(|| format!("HEAD s3://{}/{key}", self.bucket())),
        }
    }

    /// Writes a JSON manifest unless the key already holds an object (`If-None-Match: *`);
    /// returns its version id.
    pub async fn put_json(&self, key: &str, body: Vec<u8>) -> anyhow::Result<WriteOnce<Option<String>>> {
        let sha = base64::engine::general_purpose::STANDARD.encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
        write_once(true, || {
            let req = self
                .client
                .put_object()
                .bucket(self.bucket())
                .key(key)
                .content_type("application/json")
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(sha.clone())
                .if_none_match("*")
                .body(ByteStream::from(body.clone()));
            let (sse, kms_key) = self.encryption();
            req.server_side_encryption(sse).set_ssekms_key_id(kms_key).send()
        })
        .await
        .map(|w| w.map(|out| out.version_id))
        .map_err(sdk_err)
        .with_context(|| format!("put s3://{}/{key}", self.bucket()))
    }

    /// The whole (small) object, or `None` when it does not exist.
    pub async fn get_small(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.client.get_object().bucket(self.bucket()).key(key).send().await {
            Ok(o) => {
                Ok(Some(o.body.collect().await.with_context(|| format!("read s3://{}/{key}", self.bucket()))?.to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(sdk_err(e)).with_context(|| format!("get s3://{}/{key}", self.bucket())),
        }
    }

    /// Asks S3 to bring back an archived object (`RestoreObject`). `Ok(true)` when a retrieval
    /// was started, `Ok(false)` when one is already running.
    pub async fn request_retrieval(
        &self,
        key: &str,
        version_id: Option<&str>,
        tier: Tier,
        days: Option<u32>,
    ) -> anyhow::Result<bool> {
        let mut request = RestoreRequest::builder().glacier_job_parameters(
            GlacierJobParameters::builder().tier(aws_sdk_s3::types::Tier::from(tier.as_str())).build()?,
        );
        if let Some(days) = days {
            request = request.days(days as i32);
        }
        match self
            .client
            .restore_object()
            .bucket(self.bucket())
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .restore_request(request.build())
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().and_then(|s| s.meta().code()) == Some("RestoreAlreadyInProgress") => {
                Ok(false)
            }
            Err(e) => Err(sdk_err(e))
                .with_context(|| format!("request a {} retrieval of s3://{}/{key}", tier.as_str(), self.bucket())),
        }
    }

    /// Bytes `start..end` of an object (a Parquet footer, a row group), read whole.
    pub async fn get_range(
        &self,
        key: &str,
        version_id: Option<&str>,
        start: u64,
        end: u64,
    ) -> anyhow::Result<bytes::Bytes> {
        if start >= end {
            return Ok(bytes::Bytes::new());
        }
        let body = self.get(key, version_id, Some(format!("bytes={start}-{}", end - 1))).await?;
        let attempt = self.settings.s3_timeouts.attempt;
        let read = format!("read s3://{}/{key}", self.bucket());
        let body = tokio::time::timeout(attempt, body.collect())
            .await
            .map_err(|_| S3Failure(format!("{read}: not read within {} s", attempt.as_secs())))?
            .map_err(|e| S3Failure(format!("{read}: {}", aws_sdk_s3::error::DisplayErrorContext(e))))?;
        let bytes = body.into_bytes();
        anyhow::ensure!(
            bytes.len() as u64 == end - start,
            "s3://{}/{key}: asked for {} bytes, got {}",
            self.bucket(),
            end - start,
            bytes.len()
        );
        Ok(bytes)
    }

    /// GetObject, whole or a `range`; a missing object is `NotFound`, a cold one a transient error
    /// that says a retrieval is needed.
    pub async fn get(&self, key: &str, version_id: Option<&str>, range: Option<String>) -> anyhow::Result<ByteStream> {
        let what = range.clone().map_or_else(String::new, |r| format!("{r} of "));
        let out = self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .set_version_id(version_id.map(str::to_string))
            .set_range(range)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    anyhow::Error::new(crate::error::Error::not_found(format!(
                        "archive object s3://{}/{key} does not exist",
                        self.settings.bucket
                    )))
                } else if e.as_service_error().is_some_and(|s| s.is_invalid_object_state()) {
                    // Archived since it was checked (a restored copy expired meanwhile).
                    anyhow::Error::new(crate::error::Error::transient(anyhow!(
                        "archive object s3://{}/{key} is in cold storage and not readable until a retrieval \
                         finishes (`restore` requests one)",
                        self.settings.bucket
                    )))
                } else {
                    sdk_err(e)
                }
            })
            .with_context(|| format!("get {what}s3://{}/{key}", self.bucket()))?;
        Ok(out.body)
    }
}
