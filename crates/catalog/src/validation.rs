//! Validation results of series: counts on `series_validation` (joined into series lists for
//! the `has_errors` / `has_warnings` filters) and one row per finding in `validation_findings`,
//! indexed by keyword and severity so findings are searchable.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{now, Catalog, CatalogError};

/// One finding as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFinding {
    /// The instance it is about; `None` for series-level findings.
    pub sop_instance_uid: Option<String>,
    /// `error` or `warning`.
    pub severity: String,
    /// Path of the attribute, e.g. `(0008,1115)[0]/(0020,000E)`; empty for the instance.
    pub tag_path: String,
    /// Keyword of the attribute.
    pub keyword: String,
    /// Module of the IOD, if known.
    pub module: Option<String>,
    /// What is wrong, for a person.
    pub message: String,
}

/// The validation of one series, as recorded.
#[derive(Clone, Debug)]
pub struct SeriesValidation {
    /// Series Instance UID.
    pub series_uid: String,
    /// Instances validated.
    pub instances_checked: i64,
    /// Number of error findings.
    pub errors: i64,
    /// Number of warning findings.
    pub warnings: i64,
    /// IODs the instances were checked against.
    pub iods: Vec<String>,
    /// Archive key of the HTML report.
    pub report_key: String,
    /// When.
    pub validated_at: String,
    /// The findings, in the order recorded.
    pub findings: Vec<StoredFinding>,
}

impl Catalog {
    /// Replaces the recorded validation of a series.
    pub async fn store_validation(
        &self,
        series_uid: &str,
        instances_checked: i64,
        iods: &[String],
        report_key: &str,
        findings: &[StoredFinding],
    ) -> Result<(), CatalogError> {
        let errors = findings.iter().filter(|f| f.severity == "error").count() as i64;
        let warnings = findings.len() as i64 - errors;
        let now = now();
        let iods = serde_json::to_string(iods).unwrap_or_else(|_| "[]".into());
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        // The counts the gallery filters on, beside the series' other filter columns; a
        // series erased while it was being validated gets no validation rows.
        let updated = sqlx::query(
            "UPDATE series SET validation_errors = $2, validation_warnings = $3 \
             WHERE series_uid = $1",
        )
        .bind(series_uid)
        .bind(errors)
        .bind(warnings)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(CatalogError::NotFound(format!("series {series_uid}")));
        }
        sqlx::query("DELETE FROM validation_findings WHERE series_uid = $1")
            .bind(series_uid)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO series_validation \
               (series_uid, instances_checked, errors, warnings, iods, report_key, validated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (series_uid) DO UPDATE SET instances_checked = excluded.instances_checked, \
               errors = excluded.errors, warnings = excluded.warnings, iods = excluded.iods, \
               report_key = excluded.report_key, validated_at = excluded.validated_at",
        )
        .bind(series_uid)
        .bind(instances_checked)
        .bind(errors)
        .bind(warnings)
        .bind(&iods)
        .bind(report_key)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        for (seq, f) in findings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO validation_findings (series_uid, seq, sop_instance_uid, severity, \
                   tag_path, keyword, module, message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(series_uid)
            .bind(seq as i64)
            .bind(f.sop_instance_uid.as_deref())
            .bind(&f.severity)
            .bind(&f.tag_path)
            .bind(&f.keyword)
            .bind(f.module.as_deref())
            .bind(&f.message)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The recorded validation of a series, if it has been validated.
    pub async fn get_validation(
        &self,
        series_uid: &str,
    ) -> Result<Option<SeriesValidation>, CatalogError> {
        let Some(row) = sqlx::query(
            "SELECT instances_checked, errors, warnings, iods, report_key, validated_at \
             FROM series_validation WHERE series_uid = $1",
        )
        .bind(series_uid)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let iods: String = row.try_get("iods")?;
        let findings = sqlx::query(
            "SELECT sop_instance_uid, severity, tag_path, keyword, module, message \
             FROM validation_findings WHERE series_uid = $1 ORDER BY seq",
        )
        .bind(series_uid)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(StoredFinding {
                sop_instance_uid: r.try_get("sop_instance_uid")?,
                severity: r.try_get("severity")?,
                tag_path: r.try_get("tag_path")?,
                keyword: r.try_get("keyword")?,
                module: r.try_get("module")?,
                message: r.try_get("message")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(SeriesValidation {
            series_uid: series_uid.to_string(),
            instances_checked: row.try_get("instances_checked")?,
            errors: row.try_get("errors")?,
            warnings: row.try_get("warnings")?,
            iods: serde_json::from_str(&iods).unwrap_or_default(),
            report_key: row.try_get("report_key")?,
            validated_at: row.try_get("validated_at")?,
            findings,
        }))
    }
}
