//! Opening the archive named by `--archive-url`: a local directory (`file:///PATH`) or an
//! S3-compatible bucket (`s3://BUCKET[/PREFIX][?PARAMETER=VALUE&…]`).
//!
//! An S3 archive takes its endpoint, region and credentials from the standard `AWS_*`
//! environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, …) and from query
//! parameters, which win: `endpoint`, `region`, `allow_http`, `access_key_id`,
//! `secret_access_key`, `session_token`, `virtual_hosted_style_request`, and the other keys of
//! object_store's `AmazonS3ConfigKey`. The bucket is checked before the archive is handed out
//! (list, then write and delete a probe object), so a server that cannot store fails at start
//! with the reason. No secret (secret key, session token, customer encryption key) ever appears
//! in a description or an error.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ClientConfigKey, ObjectStore, ObjectStoreExt};

use crate::{Archive, ArchiveError, WRITE_BUFFER_BYTES};

/// Why an archive URL could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is malformed, has an unsupported scheme or an unknown parameter.
    #[error("invalid archive URL {url}: {reason}")]
    InvalidUrl {
        /// The URL with its secrets replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The endpoint answered that the bucket does not exist.
    #[error("the S3 bucket {bucket:?} does not exist at {endpoint}: create it first")]
    BucketNotFound {
        /// The bucket's name.
        bucket: String,
        /// The endpoint asked.
        endpoint: String,
    },
    /// The endpoint refused the credentials or the operation.
    #[error(
        "{target} refused access ({reason}){hint}: radport needs to list, read, write and \
         delete objects there"
    )]
    AccessDenied {
        /// What was asked (bucket, prefix, endpoint).
        target: String,
        /// The store's answer.
        reason: String,
        /// Where credentials come from, when none were given.
        hint: String,
    },
    /// No answer, or not one that an S3-compatible server gives.
    #[error("cannot reach {target}: {reason}{hint}")]
    Unreachable {
        /// What was asked (bucket, prefix, endpoint).
        target: String,
        /// The last error.
        reason: String,
        /// Where credentials come from, when none were given.
        hint: String,
    },
    /// The local directory of a `file://` URL cannot be used.
    #[error("cannot open the archive directory {path}: {source}")]
    Local {
        /// The directory.
        path: String,
        /// The underlying failure.
        source: ArchiveError,
    },
}

/// How long the start-up check of a bucket may take per request, retries included.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Query parameters whose values are never shown.
fn is_secret(key: &AmazonS3ConfigKey) -> bool {
    matches!(
        key,
        AmazonS3ConfigKey::SecretAccessKey | AmazonS3ConfigKey::Token
    ) || key.as_ref() == "aws_sse_customer_key_base64"
}

/// The URL as it may be shown: secret parameter values (and any password) replaced by `***`.
/// Unparseable URLs are shown without their query.
pub fn redact_archive_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url.trim()) else {
        let base = url.trim().split(['?', '#']).next().unwrap_or_default();
        return if base.len() < url.trim().len() {
            format!("{base}?…")
        } else {
            base.to_string()
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let secret = AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase())
                    .map(|key| is_secret(&key))
                    // Unknown keys are shown only by name: they may be misspelled secrets.
                    .unwrap_or(true);
                let v = if secret {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

fn invalid(url: &str, reason: impl Into<String>) -> OpenError {
    OpenError::InvalidUrl {
        url: redact_archive_url(url),
        reason: reason.into(),
    }
}

impl Archive {
    /// Opens the archive named by `url` (see the module documentation): `file:///PATH` is
    /// [`Archive::local`]; `s3://BUCKET[/PREFIX]` is checked (list, write and delete a probe
    /// object under the prefix) before it is returned.
    pub async fn from_url(url: &str) -> Result<Archive, OpenError> {
        Self::open_url(url, true).await
    }

    /// Opens the archive named by `url` like [`Archive::from_url`], without the S3 check: for
    /// processes that a checked server starts (a `run-job` child per isolated job), where a
    /// probe write per job would be wasted requests.
    pub async fn from_url_unchecked(url: &str) -> Result<Archive, OpenError> {
        Self::open_url(url, false).await
    }

    async fn open_url(url: &str, check: bool) -> Result<Archive, OpenError> {
        let text = url.trim();
        let parsed = url::Url::parse(text).map_err(|e| {
            invalid(
                text,
                format!("{e}; use s3://BUCKET[/PREFIX][?endpoint=…] or file:///PATH"),
            )
        })?;
        match parsed.scheme() {
            "file" => {
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(invalid(text, "a file:// URL takes no parameters"));
                }
                let path = parsed
                    .to_file_path()
                    .map_err(|_| invalid(text, "use file:///ABSOLUTE/PATH"))?;
                Archive::local(&path).map_err(|source| OpenError::Local {
                    path: path.display().to_string(),
                    source,
                })
            }
            "s3" | "s3a" => {
                let target = S3Target::parse(text, &parsed)?;
                if check {
                    target.open().await
                } else {
                    target.open_unchecked()
                }
            }
            other => Err(invalid(
                text,
                format!(
                    "unsupported scheme {other:?}: use s3://BUCKET[/PREFIX] (S3-compatible \
                     object store) or file:///PATH (local directory)"
                ),
            )),
        }
    }
}

/// A parsed `s3://` URL.
struct S3Target {
    bucket: String,
    prefix: Option<Path>,
    builder: AmazonS3Builder,
    /// `s3://bucket/prefix at endpoint`, for messages.
    description: String,
    /// Set when no access key was given anywhere (object_store then asks the instance).
    credentials_hint: String,
}

impl S3Target {
    fn parse(text: &str, url: &url::Url) -> Result<S3Target, OpenError> {
        let bucket = url.host_str().unwrap_or_default().to_string();
        if bucket.is_empty() {
            return Err(invalid(text, "no bucket: use s3://BUCKET[/PREFIX]"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                text,
                "credentials do not belong before the bucket: set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY (or the access_key_id and secret_access_key parameters)",
            ));
        }
        if url.port().is_some() {
            return Err(invalid(
                text,
                "an s3:// URL names a bucket, not a server: give the server as \
                 ?endpoint=http://HOST:PORT",
            ));
        }
        if url.fragment().is_some() {
            return Err(invalid(text, "an archive URL has no #fragment"));
        }
        let raw_prefix = url.path().trim_matches('/');
        let prefix = if raw_prefix.is_empty() {
            None
        } else {
            let decoded = percent_decode(raw_prefix)
                .ok_or_else(|| invalid(text, "the prefix is not valid UTF-8"))?;
            Some(
                Path::parse(&decoded)
                    .map_err(|e| invalid(text, format!("bad prefix {decoded:?}: {e}")))?,
            )
        };

        let mut builder = AmazonS3Builder::from_env();
        for (key, value) in url.query_pairs() {
            let name = key.to_ascii_lowercase();
            let config = AmazonS3ConfigKey::from_str(&name).map_err(|_| {
                invalid(
                    text,
                    format!(
                        "unknown parameter {key:?} (known: endpoint, region, allow_http, \
                         access_key_id, secret_access_key, session_token, \
                         virtual_hosted_style_request, and object_store's other S3 keys)"
                    ),
                )
            })?;
            if matches!(config, AmazonS3ConfigKey::Bucket) {
                return Err(invalid(
                    text,
                    "the bucket is the URL's host: s3://BUCKET[/PREFIX]",
                ));
            }
            builder = builder.with_config(config, value.into_owned());
        }
        builder = builder.with_bucket_name(&bucket);

        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .map(|e| redact_archive_url(&e).trim_end_matches('/').to_string())
            .unwrap_or_else(|| {
                let region = builder
                    .get_config_value(&AmazonS3ConfigKey::Region)
                    .unwrap_or_else(|| "us-east-1".into());
                format!("AWS S3 ({region})")
            });
        let description = match &prefix {
            Some(p) => format!("s3://{bucket}/{p} at {endpoint}"),
            None => format!("s3://{bucket} at {endpoint}"),
        };
        let credentials_hint = if builder
            .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
            .is_none()
            && builder
                .get_config_value(&AmazonS3ConfigKey::SkipSignature)
                .is_none_or(|v| !v.eq_ignore_ascii_case("true"))
        {
            " (no AWS_ACCESS_KEY_ID or access_key_id was given, so the instance's own \
             credentials were asked for)"
                .to_string()
        } else {
            String::new()
        };
        Ok(S3Target {
            bucket,
            prefix,
            builder,
            description,
            credentials_hint,
        })
    }

    fn build(&self, builder: AmazonS3Builder) -> Result<Arc<dyn ObjectStore>, OpenError> {
        let store = builder.build().map_err(|e| OpenError::InvalidUrl {
            url: self.description.clone(),
            reason: e.to_string(),
        })?;
        Ok(match &self.prefix {
            Some(prefix) => Arc::new(PrefixStore::new(store, prefix.clone())),
            None => Arc::new(store),
        })
    }

    fn open_unchecked(self) -> Result<Archive, OpenError> {
        let store = self.build(self.builder.clone())?;
        Ok(Archive {
            store,
            local: None,
            description: self.description,
            write_buffer: WRITE_BUFFER_BYTES,
        })
    }

    async fn open(self) -> Result<Archive, OpenError> {
        // The check gives up quickly (a few retries) so that a wrong endpoint is reported in
        // seconds; the archive itself keeps object_store's patient defaults.
        let check_builder = self
            .builder
            .clone()
            .with_retry(object_store::RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                ..Default::default()
            })
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                "5s",
            )
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "10s");
        let check_store = self.build(check_builder)?;
        let store = self.build(self.builder.clone())?;
        self.check(check_store.as_ref()).await?;
        tracing::info!(archive = %self.description, "S3 archive checked: list, write, delete");
        Ok(Archive {
            store,
            local: None,
            description: self.description,
            write_buffer: WRITE_BUFFER_BYTES,
        })
    }

    /// Lists the prefix (the bucket exists and may be read), then writes and deletes a probe
    /// object (it may be written).
    async fn check(&self, store: &dyn ObjectStore) -> Result<(), OpenError> {
        let listed = tokio::time::timeout(CHECK_TIMEOUT, store.list_with_delimiter(None)).await;
        match listed {
            Err(_) => return Err(self.no_answer()),
            Ok(Err(e)) => return Err(self.classify(e)),
            Ok(Ok(_)) => {}
        }
        let probe = Path::from(format!(".radport-check/{}", uuid::Uuid::new_v4()));
        let put = tokio::time::timeout(
            CHECK_TIMEOUT,
            store.put(&probe, Bytes::from_static(b"radport write check\n").into()),
        )
        .await;
        match put {
            Err(_) => return Err(self.no_answer()),
            Ok(Err(e)) => return Err(self.classify(e)),
            Ok(Ok(_)) => {}
        }
        match tokio::time::timeout(CHECK_TIMEOUT, store.delete(&probe)).await {
            Err(_) => Err(self.no_answer()),
            Ok(Err(object_store::Error::NotFound { .. })) | Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.classify(e)),
        }
    }

    fn no_answer(&self) -> OpenError {
        OpenError::Unreachable {
            target: self.description.clone(),
            reason: format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
            hint: self.credentials_hint.clone(),
        }
    }

    fn classify(&self, err: object_store::Error) -> OpenError {
        let text = error_chain_text(&err);
        let endpoint = self
            .description
            .split_once(" at ")
            .map(|(_, e)| e.to_string())
            .unwrap_or_default();
        if text.contains("NoSuchBucket") {
            return OpenError::BucketNotFound {
                bucket: self.bucket.clone(),
                endpoint,
            };
        }
        let denied = matches!(
            err,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || [
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "403 Forbidden",
            "401 Unauthorized",
        ]
        .iter()
        .any(|s| text.contains(s));
        if denied {
            return OpenError::AccessDenied {
                target: self.description.clone(),
                reason: text,
                hint: self.credentials_hint.clone(),
            };
        }
        if let object_store::Error::NotFound { .. } = err {
            // A 404 on listing a bucket: no such bucket (some servers send no error code).
            return OpenError::BucketNotFound {
                bucket: self.bucket.clone(),
                endpoint,
            };
        }
        OpenError::Unreachable {
            target: self.description.clone(),
            reason: text,
            hint: self.credentials_hint.clone(),
        }
    }
}

/// The error and its sources, joined (object_store's top level often says only "Generic S3
/// error").
fn error_chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(v) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(err: OpenError) -> String {
        err.to_string()
    }

    async fn open_err(url: &str) -> String {
        reason(Archive::from_url(url).await.expect_err(url))
    }

    #[tokio::test]
    async fn bad_urls_say_what_is_wrong() {
        assert!(open_err("ftp://bucket")
            .await
            .contains("unsupported scheme"));
        assert!(open_err("not a url").await.contains("use s3://BUCKET"));
        assert!(open_err("s3:///prefix").await.contains("no bucket"));
        assert!(open_err("s3://bucket:9000/x").await.contains("?endpoint="));
        let err = open_err("s3://key:hunter2@bucket").await;
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = open_err("s3://bucket?endpont=http://x&secret_access_key=hunter2").await;
        assert!(err.contains("unknown parameter \"endpont\""), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(open_err("s3://bucket/a//b").await.contains("bad prefix"));
        assert!(open_err("s3://bucket?bucket=other").await.contains("host"));
        assert!(open_err("file://relative?x=1")
            .await
            .contains("no parameters"));
    }

    #[test]
    fn secrets_are_redacted() {
        let shown = redact_archive_url(
            "s3://b/p?endpoint=http://127.0.0.1:9000&access_key_id=AKIA1&secret_access_key=s3cr3t\
             &session_token=t0k3n&region=eu-west-1&mystery=m1",
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("t0k3n"), "{shown}");
        assert!(
            !shown.contains("m1"),
            "unknown parameters are hidden: {shown}"
        );
        assert!(shown.contains("region=eu-west-1"), "{shown}");
        assert!(shown.contains("access_key_id=AKIA1"), "{shown}");
        assert_eq!(redact_archive_url("garbage ?secret=1"), "garbage ?…");
        assert!(!redact_archive_url("s3://u:pw@b").contains("pw"));
    }

    #[tokio::test]
    async fn file_urls_open_a_local_directory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("archive").display());
        let archive = Archive::from_url(&url).await.unwrap();
        archive
            .put("x/y.bin", Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert!(dir.path().join("archive/x/y.bin").exists());
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_reported_quickly() {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = std::time::Instant::now();
        let err = Archive::from_url(&format!(
            "s3://bucket?endpoint=http://127.0.0.1:{port}&allow_http=true\
             &access_key_id=a&secret_access_key=hunter2"
        ))
        .await
        .unwrap_err();
        assert!(matches!(err, OpenError::Unreachable { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b/c").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
    }
}
