//! STOW-RS (PS3.18 10.5): instances in a `multipart/related; type="application/dicom"` body,
//! stored through `radport-ingest` exactly as a C-STORE is (routing into a project and dataset,
//! duplicate policy, the catalog, then the pipeline for the series).
//!
//! Each part is streamed into the archive as it arrives: its head (up to [`HEAD`]) is kept to
//! read the file meta group (and the Study Instance UID, when the path names a study), the rest
//! goes straight to the writer. One part's failure fails only that instance, answered in the
//! Failed SOP Sequence with a reason; the others are stored.

use bytes::{Bytes, BytesMut};
use futures::Stream;
use serde_json::{json, Map, Value};

use radport_catalog::Route;
use radport_ingest::{Disposition, IngestError, MetadataError};

use crate::json::key;
use crate::{DicomWeb, DicomWebError};

/// The bytes of each part kept to read its file meta group and identifying attributes.
pub const HEAD: usize = 1024 * 1024;

/// The most parts (instances) of one request.
pub const MAX_PARTS: usize = 100_000;

/// The dataset instances stored by STOW-RS go to when the request names none.
pub const DEFAULT_DATASET: &str = "dicomweb";

/// Failure reasons of the Failed SOP Sequence (PS3.4 C.4.2.1.4, PS3.18 10.5.3.2).
mod reason {
    /// Refused: out of resources (no space).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class (here: not the study the path names).
    pub const DATA_SET_DOES_NOT_MATCH: u16 = 0xA900;
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Processing failure.
    pub const PROCESSING_FAILURE: u16 = 0x0110;
}

/// The answer of a store: its status and DICOM JSON body.
#[derive(Debug)]
pub struct StoreAnswer {
    /// 200: all stored; 202: some failed; 409: all failed.
    pub status: u16,
    /// `application/dicom+json`: one object with the sequences.
    pub body: Vec<u8>,
    /// Instances stored (new or duplicate).
    pub stored: usize,
    /// Instances that failed.
    pub failed: usize,
}

/// Where a store goes.
#[derive(Clone, Debug)]
pub struct StoreTarget {
    /// Project and dataset.
    pub route: Route,
    /// Where the instances came from, for the catalog (e.g. `dicomweb:alice`).
    pub source: String,
    /// The Study Instance UID of the path (`…/studies/{study}`): every instance must be of it.
    pub study: Option<String>,
    /// The DICOMweb root URL the answer's RetrieveURLs start with.
    pub base: String,
}

struct Outcome {
    sop_class: String,
    sop_instance: String,
    study: Option<String>,
    series: Option<String>,
    failure: Option<(u16, String)>,
    warning: Option<String>,
}

/// A parameter of a content type (quotes removed).
fn parameter(content_type: &str, name: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// The boundary of a `multipart/related` content type with `application/dicom` parts
/// (`type` absent is taken as `application/dicom`); `None` for a single `application/dicom`.
fn boundary_of(content_type: &str) -> Result<Option<String>, DicomWebError> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/dicom" => Ok(None),
        "multipart/related" => {
            let ranges = crate::media::accept(&[content_type]);
            let part_type = ranges.first().and_then(|r| r.part_type.clone());
            if part_type
                .as_deref()
                .is_some_and(|t| t != "application/dicom")
            {
                return Err(DicomWebError::UnsupportedMediaType(format!(
                    "radport stores parts of type application/dicom, not {}",
                    part_type.unwrap_or_default()
                )));
            }
            let boundary = parameter(content_type, "boundary")
                .filter(|b| !b.is_empty() && b.len() <= 70)
                .ok_or_else(|| {
                    DicomWebError::BadRequest(
                        "multipart/related without a boundary (1 to 70 characters)".into(),
                    )
                })?;
            Ok(Some(boundary))
        }
        other => Err(DicomWebError::UnsupportedMediaType(format!(
            "STOW-RS takes multipart/related; type=\"application/dicom\", not {other:?}"
        ))),
    }
}

impl DicomWeb {
    /// Stores the instances of a request body of `content_type`.
    pub async fn store<S, E>(
        &self,
        content_type: &str,
        body: S,
        target: &StoreTarget,
    ) -> Result<StoreAnswer, DicomWebError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        if self
            .ingestor
            .resolve_project(&target.route.project)
            .await
            .map_err(|e| DicomWebError::Unreadable(e.to_string()))?
            .is_none()
        {
            return Err(DicomWebError::NotFound(format!(
                "no project {:?}",
                target.route.project
            )));
        }
        let mut outcomes = Vec::new();
        match boundary_of(content_type)? {
            None => {
                let mut part = SinglePart { body: Some(body) };
                outcomes.push(self.store_part(&mut part, target).await);
            }
            Some(boundary) => {
                let mut multipart = multer::Multipart::new(body, boundary);
                loop {
                    let field = match multipart.next_field().await {
                        Ok(Some(field)) => field,
                        Ok(None) => break,
                        Err(e) => {
                            if outcomes.is_empty() {
                                return Err(DicomWebError::BadRequest(format!(
                                    "the multipart body cannot be read: {e}"
                                )));
                            }
                            tracing::warn!(error = %e, "a STOW-RS body ended badly; the parts before it are stored");
                            break;
                        }
                    };
                    if outcomes.len() >= MAX_PARTS {
                        return Err(DicomWebError::TooLarge(format!(
                            "more than {MAX_PARTS} instances in one request"
                        )));
                    }
                    let part_type = field
                        .content_type()
                        .map(|m| m.essence_str().to_ascii_lowercase());
                    if part_type
                        .as_deref()
                        .is_some_and(|t| t != "application/dicom")
                    {
                        outcomes.push(Outcome {
                            sop_class: String::new(),
                            sop_instance: String::new(),
                            study: None,
                            series: None,
                            failure: Some((
                                reason::CANNOT_UNDERSTAND,
                                format!(
                                    "a part of type {} is not an instance",
                                    part_type.unwrap_or_default()
                                ),
                            )),
                            warning: None,
                        });
                        continue;
                    }
                    let mut part = FieldPart { field };
                    outcomes.push(self.store_part(&mut part, target).await);
                }
            }
        }
        Ok(answer(outcomes, target))
    }

    /// Stores one part; its failure is an outcome, not an error.
    async fn store_part(&self, part: &mut impl Part, target: &StoreTarget) -> Outcome {
        let mut outcome = Outcome {
            sop_class: String::new(),
            sop_instance: String::new(),
            study: None,
            series: None,
            failure: None,
            warning: None,
        };
        let mut head = BytesMut::new();
        let mut complete = false;
        while head.len() < HEAD {
            match part.chunk().await {
                Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                Ok(None) => {
                    complete = true;
                    break;
                }
                Err(e) => {
                    outcome.failure = Some((reason::PROCESSING_FAILURE, e));
                    return outcome;
                }
            }
        }
        let (announced, offset) = match radport_ingest::read_file_meta(&head) {
            Ok(meta) => meta,
            Err(e) => {
                outcome.failure = Some((reason::CANNOT_UNDERSTAND, e.to_string()));
                part.drain().await;
                return outcome;
            }
        };
        outcome.sop_class = announced.sop_class_uid.clone();
        outcome.sop_instance = announced.sop_instance_uid.clone();
        if let Some(study) = &target.study {
            let size = if complete {
                head.len() as u64
            } else {
                u64::MAX
            };
            match radport_ingest::extract_record(&head, size) {
                Ok(record) if &record.study_instance_uid == study => {}
                Ok(record) => {
                    outcome.failure = Some((
                        reason::DATA_SET_DOES_NOT_MATCH,
                        format!(
                            "the instance is of study {}, not of the study {study} of the URL",
                            record.study_instance_uid
                        ),
                    ));
                    part.drain().await;
                    return outcome;
                }
                Err(MetadataError::NeedMoreBytes) => {
                    outcome.failure = Some((
                        reason::CANNOT_UNDERSTAND,
                        format!(
                            "the attributes are longer than {HEAD} bytes: cannot check the study"
                        ),
                    ));
                    part.drain().await;
                    return outcome;
                }
                Err(e) => {
                    outcome.failure = Some((reason::CANNOT_UNDERSTAND, e.to_string()));
                    part.drain().await;
                    return outcome;
                }
            }
        }
        let mut incoming = match self
            .ingestor
            .begin(target.route.clone(), target.source.clone(), announced)
            .await
        {
            Ok(incoming) => incoming,
            Err(e) => {
                outcome.failure = Some(failure_of(&e));
                part.drain().await;
                return outcome;
            }
        };
        let data = head.freeze().slice(offset..);
        let mut written = incoming.write(data).await;
        while written.is_ok() {
            match part.chunk().await {
                Ok(Some(chunk)) => written = incoming.write(chunk).await,
                Ok(None) => break,
                Err(e) => {
                    written = Err(IngestError::Malformed(format!("the part ended badly: {e}")));
                }
            }
        }
        if let Err(e) = written {
            incoming.abort().await;
            outcome.failure = Some(failure_of(&e));
            part.drain().await;
            return outcome;
        }
        match self.ingestor.finish(incoming).await {
            Ok(stored) => {
                if stored.disposition == Disposition::DuplicateKept {
                    outcome.warning =
                        Some("the instance was already stored; the first copy is kept".into());
                }
                outcome.series = Some(stored.series_instance_uid);
                outcome.study = self
                    .catalog
                    .get_series(outcome.series.as_deref().unwrap_or_default())
                    .await
                    .ok()
                    .flatten()
                    .map(|s| s.series.study_instance_uid);
            }
            Err(e) => outcome.failure = Some(failure_of(&e)),
        }
        outcome
    }
}

fn failure_of(e: &IngestError) -> (u16, String) {
    let code = match e {
        IngestError::OutOfSpace(_) => reason::OUT_OF_RESOURCES,
        IngestError::Malformed(_) => reason::CANNOT_UNDERSTAND,
        _ => reason::PROCESSING_FAILURE,
    };
    (code, e.to_string())
}

/// The store's answer (PS3.18 table 10.5.3-1): Retrieve URL, Failed SOP Sequence, Referenced
/// SOP Sequence.
fn answer(outcomes: Vec<Outcome>, target: &StoreTarget) -> StoreAnswer {
    let base = target.base.trim_end_matches('/');
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    let ui = |v: &str| json!({ "vr": "UI", "Value": [v] });
    for o in &outcomes {
        let mut item = Map::new();
        item.insert(key(0x0008, 0x1150), ui(&o.sop_class));
        item.insert(key(0x0008, 0x1155), ui(&o.sop_instance));
        match &o.failure {
            Some((code, why)) => {
                tracing::debug!(reason = code, why, "a STOW-RS instance failed");
                item.insert(key(0x0008, 0x1197), json!({ "vr": "US", "Value": [code] }));
                failed.push(Value::Object(item));
            }
            None => {
                if let (Some(study), Some(series)) = (&o.study, &o.series) {
                    item.insert(
                        key(0x0008, 0x1190),
                        json!({ "vr": "UR", "Value": [format!(
                            "{base}/studies/{study}/series/{series}/instances/{}",
                            o.sop_instance
                        )] }),
                    );
                }
                if let Some(warning) = &o.warning {
                    item.insert(
                        key(0x0008, 0x1196),
                        json!({ "vr": "US", "Value": [0xB007u16] }),
                    );
                    tracing::debug!(warning, "a STOW-RS instance was a duplicate");
                }
                referenced.push(Value::Object(item));
            }
        }
    }
    let mut body = Map::new();
    let studies: std::collections::BTreeSet<&str> =
        outcomes.iter().filter_map(|o| o.study.as_deref()).collect();
    if let Some(study) = target.study.as_deref().or_else(|| {
        (studies.len() == 1)
            .then(|| studies.iter().next().copied())
            .flatten()
    }) {
        body.insert(
            key(0x0008, 0x1190),
            json!({ "vr": "UR", "Value": [format!("{base}/studies/{study}")] }),
        );
    }
    if !failed.is_empty() {
        body.insert(key(0x0008, 0x1198), json!({ "vr": "SQ", "Value": failed }));
    }
    if !referenced.is_empty() {
        body.insert(
            key(0x0008, 0x1199),
            json!({ "vr": "SQ", "Value": referenced }),
        );
    }
    let (stored, failed) = (referenced.len(), failed.len());
    let status = match (stored, failed) {
        (_, 0) => 200,
        (0, _) => 409,
        _ => 202,
    };
    StoreAnswer {
        status,
        body: serde_json::to_vec(&Value::Object(body)).unwrap_or_default(),
        stored,
        failed,
    }
}

/// A part's bytes, chunk by chunk.
trait Part {
    /// The next chunk, `None` at the end.
    async fn chunk(&mut self) -> Result<Option<Bytes>, String>;

    /// Reads the rest without keeping it.
    async fn drain(&mut self) {
        while let Ok(Some(_)) = self.chunk().await {}
    }
}

struct FieldPart<'a> {
    field: multer::Field<'a>,
}

impl Part for FieldPart<'_> {
    async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        self.field.chunk().await.map_err(|e| e.to_string())
    }
}

/// A body that is one `application/dicom` instance.
struct SinglePart<S> {
    body: Option<S>,
}

impl<S, E> Part for SinglePart<S>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        match futures::StreamExt::next(body).await {
            Some(Ok(chunk)) => Ok(Some(chunk)),
            Some(Err(e)) => {
                self.body = None;
                Err(e.into().to_string())
            }
            None => {
                self.body = None;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(boundary_of("application/dicom").ok(), Some(None));
        assert_eq!(
            boundary_of(r#"multipart/related; type="application/dicom"; boundary=abc"#).ok(),
            Some(Some("abc".to_string()))
        );
        assert!(matches!(
            boundary_of(r#"multipart/related; type="application/dicom+xml"; boundary=abc"#),
            Err(DicomWebError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            boundary_of("multipart/related; type=application/dicom"),
            Err(DicomWebError::BadRequest(_))
        ));
        assert!(matches!(
            boundary_of("text/plain"),
            Err(DicomWebError::UnsupportedMediaType(_))
        ));
    }
}
