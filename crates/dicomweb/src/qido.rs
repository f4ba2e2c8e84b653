//! QIDO-RS (PS3.18 10.6): searches for studies, series and instances.
//!
//! A query's parameters become a [`radport_catalog::search::Search`] (the same matching as
//! C-FIND), and its answers DICOM JSON from the catalog's rows; only attributes asked for by
//! `includefield` beyond the catalog's come from the stored DICOM JSON of one instance per
//! answer (still the catalog, never the files).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use radport_catalog::search::{Attribute, Condition, Found, Level, Scope, Search};

use crate::json::{belongs_to_level, found_attributes, key, tag_of};
use crate::{DicomWeb, DicomWebError, Target};

/// Answers of a search when the query gives no `limit`.
pub const DEFAULT_LIMIT: u32 = 1000;

/// The largest `limit` honoured (a larger one is lowered to it, with a warning).
pub const MAX_LIMIT: u32 = radport_catalog::search::MAX_SEARCH_RESULTS;

/// Which attributes beyond the defaults an answer carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncludeFields {
    /// The level's default attributes only.
    Defaults,
    /// Every attribute the level has (`includefield=all`).
    All,
    /// These too (DICOM JSON keys: eight hex digits).
    Tags(Vec<String>),
}

/// A parsed QIDO-RS query.
#[derive(Clone, Debug)]
pub struct Query {
    /// The catalog search.
    pub search: Search,
    /// Extra attributes to return.
    pub include: IncludeFields,
    /// `Warning` header values (PS3.18 8.3.5.1), e.g. for `fuzzymatching=true`.
    pub warnings: Vec<String>,
}

/// The answer of a search.
#[derive(Clone, Debug)]
pub struct Answer {
    /// `application/dicom+json`: an array of objects.
    pub body: Vec<u8>,
    /// `Warning` header values.
    pub warnings: Vec<String>,
}

/// A query at `level` under `target` (the study, or study and series, of the path) from the
/// query string's parameters, for what `scope` may see.
pub fn parse(
    level: Level,
    target: &Target,
    params: &[(String, String)],
    scope: Scope,
) -> Result<Query, DicomWebError> {
    let mut conditions = Vec::new();
    if let Some(study) = &target.study {
        conditions.push(Condition {
            attribute: Attribute::StudyInstanceUid,
            value: study.clone(),
        });
    }
    if let Some(series) = &target.series {
        conditions.push(Condition {
            attribute: Attribute::SeriesInstanceUid,
            value: series.clone(),
        });
    }
    let mut limit = None;
    let mut offset = 0u64;
    let mut include = IncludeFields::Defaults;
    let mut extra_tags = Vec::new();
    let mut warnings = Vec::new();
    let bad = |m: String| DicomWebError::BadRequest(m);
    for (name, value) in params {
        match name.as_str() {
            "limit" => {
                let n: u32 = value
                    .parse()
                    .map_err(|_| bad(format!("limit must be a whole number, not {value:?}")))?;
                if n > MAX_LIMIT {
                    warnings.push(format!(
                        "299 radport: limit lowered to {MAX_LIMIT}, the most one answer gives"
                    ));
                }
                limit = Some(n.min(MAX_LIMIT));
            }
            "offset" => {
                offset = value
                    .parse()
                    .map_err(|_| bad(format!("offset must be a whole number, not {value:?}")))?;
            }
            "fuzzymatching" => match value.as_str() {
                "false" => {}
                "true" => warnings.push(
                    "299 radport: the fuzzymatching parameter is not supported; \
                     only literal matching has been performed"
                        .to_string(),
                ),
                other => {
                    return Err(bad(format!(
                        "fuzzymatching must be true or false, not {other:?}"
                    )))
                }
            },
            "includefield" => {
                for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if field == "all" {
                        include = IncludeFields::All;
                    } else {
                        let (group, element) = tag_of(field).ok_or_else(|| {
                            bad(format!("includefield: unknown attribute {field:?}"))
                        })?;
                        extra_tags.push(key(group, element));
                    }
                }
            }
            // Parameters of other DICOMweb services and of browsers' caches are not keys.
            "accept" | "charset" | "_" => {}
            _ => {
                let (group, element) = tag_of(name)
                    .ok_or_else(|| bad(format!("unknown query parameter or attribute {name:?}")))?;
                match Attribute::from_tag(group, element) {
                    Some(attribute) => {
                        if attribute.level() > level && attribute != Attribute::ModalitiesInStudy {
                            return Err(bad(format!(
                                "{name} is not a matching key of a {} search",
                                level_name(level)
                            )));
                        }
                        conditions.push(Condition {
                            attribute,
                            value: value.clone(),
                        })
                    }
                    // An empty value asks for the attribute to be returned.
                    None if value.trim().is_empty() => extra_tags.push(key(group, element)),
                    None => {
                        return Err(bad(format!(
                            "{name} is not a supported matching key (see the conformance \
                             statement); send it empty or as includefield to have it returned"
                        )))
                    }
                }
            }
        }
    }
    if include == IncludeFields::Defaults && !extra_tags.is_empty() {
        include = IncludeFields::Tags(extra_tags);
    }
    let search = Search {
        level,
        conditions,
        scope,
        limit: limit.unwrap_or(DEFAULT_LIMIT),
        offset,
    };
    radport_catalog::search::check(&search).map_err(|e| bad(e.to_string()))?;
    Ok(Query {
        search,
        include,
        warnings,
    })
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Patient => "patient",
        Level::Study => "study",
        Level::Series => "series",
        Level::Instance => "instance",
    }
}

/// The UID an answer is identified by at its level.
fn uid_of(found: &Found, level: Level) -> Option<&str> {
    match level {
        Level::Patient => found.patient.id.as_deref(),
        Level::Study => found.study.as_ref().map(|s| s.uid.as_str()),
        Level::Series => found.series.as_ref().map(|s| s.uid.as_str()),
        Level::Instance => found.instance.as_ref().map(|i| i.sop_instance_uid.as_str()),
    }
}

/// The WADO-RS URL of an answer under `base`.
pub(crate) fn retrieve_url(base: &str, found: &Found, level: Level) -> String {
    let mut url = base.trim_end_matches('/').to_string();
    if let Some(study) = &found.study {
        url.push_str("/studies/");
        url.push_str(&study.uid);
    }
    if level >= Level::Series {
        if let Some(series) = &found.series {
            url.push_str("/series/");
            url.push_str(&series.uid);
        }
    }
    if level == Level::Instance {
        if let Some(instance) = &found.instance {
            url.push_str("/instances/");
            url.push_str(&instance.sop_instance_uid);
        }
    }
    url
}

impl DicomWeb {
    /// Runs a query; `base` is the DICOMweb root URL the answers' RetrieveURLs start with.
    pub async fn search(&self, query: &Query, base: &str) -> Result<Answer, DicomWebError> {
        let level = query.search.level;
        let limit = query.search.limit as usize;
        let mut search = query.search.clone();
        // One more than asked: whether there are more to tell.
        search.limit = search.limit.saturating_add(1);
        let mut found = self.catalog.search(&search).await?;
        let mut warnings = query.warnings.clone();
        if found.len() > limit {
            found.truncate(limit);
            warnings.push(
                "299 radport: there are additional results that can be requested \
                 (limit and offset)"
                    .to_string(),
            );
        }
        let stored = self
            .stored_attributes(level, &found, &query.include)
            .await?;
        let mut answers = Vec::with_capacity(found.len());
        for f in &found {
            let mut attributes = found_attributes(f, level, &retrieve_url(base, f, level));
            if let Some(json) = uid_of(f, level).and_then(|uid| stored.get(uid)) {
                merge_stored(&mut attributes, json, level, &query.include);
            }
            answers.push(Value::Object(attributes));
        }
        let body = serde_json::to_vec(&answers)
            .map_err(|e| DicomWebError::Unreadable(format!("cannot write the answer: {e}")))?;
        Ok(Answer { body, warnings })
    }

    /// The stored DICOM JSON of one instance per answer, by the answer's UID, when the query
    /// asks for attributes beyond the catalog's.
    async fn stored_attributes(
        &self,
        level: Level,
        found: &[Found],
        include: &IncludeFields,
    ) -> Result<BTreeMap<String, Map<String, Value>>, DicomWebError> {
        let wanted = match include {
            IncludeFields::Defaults => false,
            IncludeFields::All => true,
            IncludeFields::Tags(tags) => {
                let defaults = found
                    .first()
                    .map(|f| found_attributes(f, level, ""))
                    .unwrap_or_default();
                tags.iter().any(|t| !defaults.contains_key(t))
            }
        };
        if !wanted || found.is_empty() || level == Level::Patient {
            return Ok(BTreeMap::new());
        }
        let uids: Vec<String> = found
            .iter()
            .filter_map(|f| uid_of(f, level).map(str::to_string))
            .collect();
        let by_uid: BTreeMap<String, String> = if level == Level::Instance {
            uids.iter().map(|u| (u.clone(), u.clone())).collect()
        } else {
            self.catalog.representative_instances(level, &uids).await?
        };
        let sops: Vec<String> = by_uid.values().cloned().collect();
        let json = self.catalog.instance_metadata(&sops).await?;
        let mut out = BTreeMap::new();
        for (uid, sop) in by_uid {
            if let Some(Ok(Value::Object(map))) =
                json.get(&sop).map(|j| serde_json::from_str::<Value>(j))
            {
                out.insert(uid, map);
            }
        }
        Ok(out)
    }
}

/// Adds to an answer the stored attributes `include` asks for that it does not have.
fn merge_stored(
    attributes: &mut Map<String, Value>,
    stored: &Map<String, Value>,
    level: Level,
    include: &IncludeFields,
) {
    match include {
        IncludeFields::Defaults => {}
        IncludeFields::All => {
            for (tag, value) in stored {
                if !attributes.contains_key(tag) && belongs_to_level(tag, level) {
                    attributes.insert(tag.clone(), value.clone());
                }
            }
        }
        IncludeFields::Tags(tags) => {
            for tag in tags {
                if !attributes.contains_key(tag) {
                    if let Some(value) = stored.get(tag) {
                        attributes.insert(tag.clone(), value.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_become_a_search() {
        let target = Target {
            study: Some("1.2".into()),
            ..Target::default()
        };
        let q = parse(
            Level::Series,
            &target,
            &params(&[
                ("Modality", "CT"),
                ("00100010", "doe*"),
                ("limit", "5"),
                ("offset", "10"),
                ("includefield", "ProtocolName,00081030"),
                ("fuzzymatching", "true"),
            ]),
            Scope::All,
        )
        .expect("parses");
        assert_eq!(q.search.limit, 5);
        assert_eq!(q.search.offset, 10);
        assert_eq!(q.search.conditions.len(), 3);
        assert_eq!(
            q.search.conditions[0].attribute,
            Attribute::StudyInstanceUid
        );
        assert_eq!(
            q.include,
            IncludeFields::Tags(vec!["00181030".into(), "00081030".into()])
        );
        assert_eq!(q.warnings.len(), 1);
    }

    #[test]
    fn bad_queries_are_refused() {
        let t = Target::default();
        for bad in [
            vec![("limit", "-1")],
            vec![("NoSuchThing", "1")],
            vec![("Modality", "CT")],
            vec![("ProtocolName", "x")],
            vec![("includefield", "Nope")],
            vec![("fuzzymatching", "maybe")],
            vec![("StudyDate", "2024-01-01")],
            vec![("StudyInstanceUID", "1.2.*")],
        ] {
            let r = parse(Level::Study, &t, &params(&bad), Scope::All);
            assert!(matches!(r, Err(DicomWebError::BadRequest(_))), "{bad:?}");
        }
        // An empty unsupported key is a request to return it.
        let q = parse(
            Level::Study,
            &t,
            &params(&[("ProtocolName", "")]),
            Scope::All,
        )
        .expect("parses");
        assert_eq!(q.include, IncludeFields::Tags(vec!["00181030".into()]));
    }
}
