//! [`S3Store`]: any S3-compatible server through `aws-sdk-s3`, with static credentials.

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use bytes::Bytes;
use serde::Deserialize;

use crate::{ObjectStore, StorageError, check_prefix, validate_key};

/// How long to wait for a TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take until its response headers arrive.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how to reach an S3 bucket. Deserialisable from config files/env; the
/// credentials never appear in `Debug` output.
#[derive(Clone, Deserialize)]
pub struct S3Config {
    /// Endpoint URL such as `http://127.0.0.1:9000`; `None` means AWS S3 itself.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Signing region (default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// Bucket holding every object.
    pub bucket: String,
    /// Access key id (secret: redacted in `Debug`).
    pub access_key_id: String,
    /// Secret access key (secret: redacted in `Debug`).
    pub secret_access_key: String,
    /// Path-style URLs (`endpoint/bucket/key`), which most self-hosted servers need
    /// (default `true`).
    #[serde(default = "default_true")]
    pub force_path_style: bool,
    /// Create the bucket in [`S3Store::connect`] when it does not exist (default `false`).
    #[serde(default)]
    pub create_bucket: bool,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_true() -> bool {
    true
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint.as_deref().map(redact_userinfo))
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &"***")
            .field("secret_access_key", &"***")
            .field("force_path_style", &self.force_path_style)
            .field("create_bucket", &self.create_bucket)
            .finish()
    }
}

/// Drops `user:password@` from a URL, should someone put credentials there.
fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if scheme.is_empty() => format!("***@{}", &rest[at + 1..]),
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// One bucket of an S3-compatible server. Each call makes a single attempt (the SDK's own
/// retries are off): wrap it in [`RetryingStore`](crate::RetryingStore) for retries, so that
/// every retry is visible in the logs.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    location: String,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("location", &self.describe()).finish()
    }
}

impl S3Store {
    /// Builds a client for `cfg` (static credentials, no environment or instance-metadata
    /// look-ups) and, when `cfg.create_bucket`, creates the bucket if it is missing. Without
    /// `create_bucket` no request is made: bad credentials or a missing bucket show up as
    /// [`StorageError::Permanent`] on the first operation.
    pub async fn connect(cfg: &S3Config) -> Result<Self, StorageError> {
        let invalid = |what: &str| StorageError::permanent("connect", "", format!("invalid S3 config: {what}"));
        if cfg.bucket.is_empty() {
            return Err(invalid("bucket is empty"));
        }
        if cfg.access_key_id.is_empty() || cfg.secret_access_key.is_empty() {
            return Err(invalid("access_key_id and secret_access_key must both be set"));
        }
        if cfg.region.is_empty() {
            return Err(invalid("region is empty"));
        }
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(Credentials::new(
                cfg.access_key_id.clone(),
                cfg.secret_access_key.clone(),
                None,
                None,
                "flowgrad-static",
            ))
            .force_path_style(cfg.force_path_style)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        let location = match &cfg.endpoint {
            Some(endpoint) => {
                if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                    return Err(invalid("endpoint must start with http:// or https://"));
                }
                builder = builder.endpoint_url(endpoint);
                format!("s3://{} at {}", cfg.bucket, redact_userinfo(endpoint))
            }
            None => format!("s3://{} (AWS, {})", cfg.bucket, cfg.region),
        };
        let store = Self { client: Client::from_conf(builder.build()), bucket: cfg.bucket.clone(), location };
        if cfg.create_bucket {
            store.create_bucket(&cfg.region).await?;
        }
        Ok(store)
    }

    /// Creates the bucket; one that already exists and is accessible is fine.
    async fn create_bucket(&self, region: &str) -> Result<(), StorageError> {
        let mut request = self.client.create_bucket().bucket(&self.bucket);
        if region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => Ok(()),
            // Some servers answer BucketAlreadyExists to the owner too: check that we can use it.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_exists()) => self
                .client
                .head_bucket()
                .bucket(&self.bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.error("create_bucket", &self.bucket, e)),
            Err(e) => Err(self.error("create_bucket", &self.bucket, e)),
        }
    }

    /// Classifies an SDK error as transient or permanent, with a readable message.
    fn error<E>(
        &self,
        op: &'static str,
        key: &str,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (transient, detail) = match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = err.code().unwrap_or("no error code");
                let throttled = matches!(
                    code,
                    "SlowDown"
                        | "Throttling"
                        | "ThrottlingException"
                        | "RequestTimeout"
                        | "InternalError"
                        | "ServiceUnavailable"
                        | "RequestLimitExceeded"
                );
                let transient = status >= 500 || status == 408 || status == 429 || throttled;
                let message = err.message().unwrap_or("no message");
                (transient, format!("HTTP {status} {code}: {message}"))
            }
            SdkError::ConstructionFailure(_) => (false, DisplayErrorContext(&err).to_string()),
            SdkError::DispatchFailure(dispatch) => (!dispatch.is_user(), DisplayErrorContext(&err).to_string()),
            _ => (true, DisplayErrorContext(&err).to_string()),
        };
        let message = format!("{}: {detail}", self.location);
        if transient { StorageError::transient(op, key, message) } else { StorageError::permanent(op, key, message) }
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        validate_key("get", key)?;
        let output = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(output) => output,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.error("get", key, e)),
        };
        let body = output.body.collect().await.map_err(|e| {
            StorageError::transient(
                "get",
                key,
                format!("{}: reading the body: {}", self.location, DisplayErrorContext(&e)),
            )
        })?;
        Ok(Some(body.into_bytes()))
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        validate_key("put", key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.error("put", key, e))
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StorageError> {
        validate_key("put_if_absent", key)?;
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
                // 412 Precondition Failed: the object exists.
                Some(412) => Ok(false),
                // 409 ConditionalRequestConflict: a concurrent write is in flight; AWS says retry.
                Some(409) => Err(StorageError::transient(
                    "put_if_absent",
                    key,
                    format!("{}: conflicting concurrent write, retry: {}", self.location, DisplayErrorContext(&e)),
                )),
                _ => Err(self.error("put_if_absent", key, e)),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_prefix(prefix)?;
        let mut request = self.client.list_objects_v2().bucket(&self.bucket);
        if !prefix.is_empty() {
            request = request.prefix(prefix);
        }
        let mut pages = request.into_paginator().send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list", prefix, e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key()).map(str::to_owned));
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key("delete", key)?;
        match self.client.delete_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(()),
            // S3 answers 204 for a missing key; some compatible servers answer NoSuchKey.
            Err(e) if e.code() == Some("NoSuchKey") => Ok(()),
            Err(e) => Err(self.error("delete", key, e)),
        }
    }

    fn describe(&self) -> String {
        self.location.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(redact_userinfo("http://u:p@host:9000/x@y"), "http://***@host:9000/x@y");
        assert_eq!(redact_userinfo("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(redact_userinfo("u:p@host"), "***@host");
    }

    #[tokio::test]
    async fn connect_rejects_bad_config_before_any_request() {
        let cfg = S3Config {
            endpoint: Some("127.0.0.1:9000".into()),
            region: "us-east-1".into(),
            bucket: "b".into(),
            access_key_id: "k".into(),
            secret_access_key: "s".into(),
            force_path_style: true,
            create_bucket: true,
        };
        let err = S3Store::connect(&cfg).await.unwrap_err();
        assert!(matches!(err, StorageError::Permanent { .. }), "{err:?}");
        assert!(err.to_string().contains("http://"), "{err}");
        let err = S3Store::connect(&S3Config { secret_access_key: String::new(), ..cfg.clone() }).await.unwrap_err();
        assert!(err.to_string().contains("secret_access_key"), "{err}");
        let err = S3Store::connect(&S3Config { bucket: String::new(), ..cfg }).await.unwrap_err();
        assert!(err.to_string().contains("bucket is empty"), "{err}");
    }
}
