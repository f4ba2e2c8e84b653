//! WADO-RS (PS3.18 10.4): studies, series and instances as stored (`multipart/related;
//! type="application/dicom"`), and their metadata (DICOM JSON with BulkDataURIs).
//!
//! Which instances a path names, for what the caller may see, is a catalog search at the
//! instance level; the files are streamed from the archive one after the other, each opened
//! when the previous one has been sent, so a study of any size is sent in bounded memory.

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use futures::FutureExt;
use serde_json::{json, Map, Value};

use radport_catalog::search::{Attribute, Condition, Found, Level, Scope, Search};

use crate::media::{self, MediaRange};
use crate::multipart::{self, Body, LazyPart};
use crate::{DicomWeb, DicomWebError, Target};

/// The most instances one retrieve or metadata request sends (a larger study is refused
/// with 413: ask for it series by series).
pub const MAX_INSTANCES_PER_REQUEST: usize = 100_000;

/// Stored files are read in pieces of this size (one range read each).
pub(crate) const READ_PIECE: u64 = 1024 * 1024;

/// Instances whose stored DICOM JSON is read from the catalog at once for a metadata answer.
const METADATA_BATCH: usize = 200;

/// An answer whose body is streamed.
pub struct Streamed {
    /// Its `Content-Type`.
    pub content_type: String,
    /// The body.
    pub body: Body,
}

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// The conditions naming a target's study, series and instance.
pub(crate) fn target_conditions(target: &Target) -> Vec<Condition> {
    let mut conditions = Vec::new();
    for (attribute, uid) in [
        (Attribute::StudyInstanceUid, &target.study),
        (Attribute::SeriesInstanceUid, &target.series),
        (Attribute::SopInstanceUid, &target.instance),
    ] {
        if let Some(uid) = uid {
            conditions.push(Condition {
                attribute,
                // A UID with a backslash would be a list; one with a wildcard is refused.
                value: uid.replace('\\', ""),
            });
        }
    }
    conditions
}

impl DicomWeb {
    /// The instances a path names that `scope` may see, in series and instance order;
    /// `NotFound` when there are none.
    pub async fn instances(
        &self,
        target: &Target,
        scope: &Scope,
    ) -> Result<Vec<Found>, DicomWebError> {
        let page = radport_catalog::search::MAX_SEARCH_RESULTS;
        let mut all = Vec::new();
        // Series by series when the path names a study: instances come in their order.
        let series: Vec<Option<String>> = if target.series.is_some() {
            vec![target.series.clone()]
        } else {
            let found = self
                .catalog
                .search(&Search {
                    level: Level::Series,
                    conditions: target_conditions(target),
                    scope: scope.clone(),
                    limit: page,
                    offset: 0,
                })
                .await?;
            found
                .into_iter()
                .filter_map(|f| f.series.map(|s| Some(s.uid)))
                .collect()
        };
        for series_uid in series {
            let mut t = target.clone();
            t.series = series_uid;
            let mut offset = 0u64;
            loop {
                let found = self
                    .catalog
                    .search(&Search {
                        level: Level::Instance,
                        conditions: target_conditions(&t),
                        scope: scope.clone(),
                        limit: page,
                        offset,
                    })
                    .await?;
                let n = found.len();
                all.extend(found);
                if all.len() > MAX_INSTANCES_PER_REQUEST {
                    return Err(DicomWebError::TooLarge(format!(
                        "more than {MAX_INSTANCES_PER_REQUEST} instances: retrieve them series \
                         by series"
                    )));
                }
                if n < page as usize {
                    break;
                }
                offset += n as u64;
            }
        }
        if all.is_empty() {
            return Err(DicomWebError::NotFound(
                "no such study, series or instance".into(),
            ));
        }
        Ok(all)
    }

    /// The stored instances of a path as `multipart/related; type="application/dicom"`.
    /// A transfer syntax named in `Accept` must be the stored one (radport does not transcode
    /// whole instances): otherwise 406.
    pub async fn retrieve(
        &self,
        target: &Target,
        scope: &Scope,
        accept: &[MediaRange],
    ) -> Result<Streamed, DicomWebError> {
        let wanted =
            media::multipart_transfer_syntax(accept, &["application/dicom"]).ok_or_else(|| {
                DicomWebError::NotAcceptable(
                    "instances are sent as multipart/related; type=\"application/dicom\"".into(),
                )
            })?;
        let found = self.instances(target, scope).await?;
        let mut parts = Vec::with_capacity(found.len());
        for f in found {
            let Some(instance) = f.instance else { continue };
            if let Some(ts) = &wanted {
                if ts != &instance.transfer_syntax_uid {
                    return Err(DicomWebError::NotAcceptable(format!(
                        "instance {} is stored in {}, not {ts}; ask with transfer-syntax=* \
                         to get it as stored",
                        instance.sop_instance_uid, instance.transfer_syntax_uid
                    )));
                }
            }
            let archive = self.archive.clone();
            let key = instance.object_key.clone();
            let size = u64::try_from(instance.size).unwrap_or(0);
            parts.push(LazyPart {
                content_type: format!(
                    "application/dicom; transfer-syntax={}",
                    instance.transfer_syntax_uid
                ),
                length: u64::try_from(instance.size).ok(),
                read_ahead: size.min(READ_PIECE),
                open: {
                    async move {
                        // The first piece is read when the part is opened (ahead of sending).
                        let mut pieces = archive.get_in_pieces(&key, 0..size, READ_PIECE);
                        let first = pieces.next().await;
                        Ok(stream::iter(first).chain(pieces).boxed())
                    }
                    .boxed()
                },
            });
        }
        let boundary = multipart::boundary();
        Ok(Streamed {
            content_type: format!(
                "multipart/related; type=\"application/dicom\"; boundary={boundary}"
            ),
            body: multipart::related(boundary, parts, &self.read_ahead),
        })
    }

    /// The metadata of the instances of a path (DICOM JSON, an array), with BulkDataURIs
    /// under `base` for Pixel Data and for the binary values the catalog leaves out.
    pub async fn metadata(
        &self,
        target: &Target,
        scope: &Scope,
        base: &str,
    ) -> Result<Streamed, DicomWebError> {
        let found = self.instances(target, scope).await?;
        let catalog = self.catalog.clone();
        let base = base.trim_end_matches('/').to_string();
        let batches: Vec<Vec<Found>> = found
            .chunks(METADATA_BATCH)
            .map(<[Found]>::to_vec)
            .collect();
        let count = batches.len();
        let body = stream::iter(batches.into_iter().enumerate())
            .then(move |(n, batch)| {
                let catalog = catalog.clone();
                let base = base.clone();
                async move {
                    let uids: Vec<String> = batch
                        .iter()
                        .filter_map(|f| f.instance.as_ref().map(|i| i.sop_instance_uid.clone()))
                        .collect();
                    let stored = catalog
                        .instance_metadata(&uids)
                        .await
                        .map_err(|e| radport_archive::ArchiveError::Storage(e.to_string()))?;
                    let mut out = Vec::new();
                    for (i, f) in batch.iter().enumerate() {
                        let Some(instance) = &f.instance else {
                            continue;
                        };
                        let json = stored
                            .get(&instance.sop_instance_uid)
                            .and_then(|j| serde_json::from_str::<Value>(j).ok());
                        let object = with_bulk_data_uris(json, f, &base);
                        out.push(if n == 0 && i == 0 { b'[' } else { b',' });
                        serde_json::to_writer(&mut out, &object)
                            .map_err(|e| radport_archive::ArchiveError::Storage(e.to_string()))?;
                    }
                    if n + 1 == count {
                        out.push(b']');
                    }
                    Ok(Bytes::from(out))
                }
            })
            .boxed();
        Ok(Streamed {
            content_type: "application/dicom+json".into(),
            body,
        })
    }
}

/// VRs whose values the catalog's DICOM JSON leaves out above 1 KiB.
const BULK_VRS: &[&str] = &["OB", "OW", "OF", "OD", "OL", "OV", "UN"];

/// The stored DICOM JSON of an instance with its identifying attributes made sure of, and
/// BulkDataURIs for Pixel Data and for binary values left out (elements with a bulk VR and no
/// value).
fn with_bulk_data_uris(stored: Option<Value>, found: &Found, base: &str) -> Value {
    let mut object = match stored {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let (Some(study), Some(series), Some(instance)) =
        (&found.study, &found.series, &found.instance)
    else {
        return Value::Object(object);
    };
    let instance_url = format!(
        "{base}/studies/{}/series/{}/instances/{}",
        study.uid, series.uid, instance.sop_instance_uid
    );
    for (tag, element) in object.iter_mut() {
        let Some(e) = element.as_object_mut() else {
            continue;
        };
        let bulk = e
            .get("vr")
            .and_then(Value::as_str)
            .is_some_and(|vr| BULK_VRS.contains(&vr));
        if bulk && !e.contains_key("Value") && !e.contains_key("InlineBinary") {
            e.insert(
                "BulkDataURI".into(),
                json!(format!("{instance_url}/bulkdata/{tag}")),
            );
        }
    }
    if instance.rows.is_some() && !object.contains_key("7FE00010") {
        let native =
            media::NATIVE_TRANSFER_SYNTAXES.contains(&instance.transfer_syntax_uid.as_str());
        let bits = object
            .get("00280100")
            .and_then(|e| e["Value"][0].as_i64())
            .unwrap_or(16);
        let vr = if native && bits > 8 { "OW" } else { "OB" };
        object.insert(
            "7FE00010".into(),
            json!({ "vr": vr, "BulkDataURI": format!("{instance_url}/bulkdata/7FE00010") }),
        );
    }
    for (key, vr, value) in [
        ("0020000D", "UI", &study.uid),
        ("0020000E", "UI", &series.uid),
        ("00080018", "UI", &instance.sop_instance_uid),
        ("00080016", "UI", &instance.sop_class_uid),
    ] {
        object
            .entry(key.to_string())
            .or_insert_with(|| json!({ "vr": vr, "Value": [value] }));
    }
    Value::Object(object)
}
