//! Self-contained HTML report.

use crate::{Finding, InstanceValidation, Severity};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.2em;margin-top:1.5em;border-bottom:1px solid #ccc}\
h3{font-size:1.05em}h4{font-size:1em;margin:.8em 0 .3em}\
table{border-collapse:collapse;margin:.3em 0 1em;width:100%}\
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top;font-size:.9em}\
th{background:#f3f3f3}code{font-family:ui-monospace,monospace}\
.error{color:#a00;font-weight:bold}.warning{color:#a60;font-weight:bold}\
.summary td{font-size:1em}.ok{color:#070}";

fn sev(s: Severity) -> (&'static str, &'static str) {
    match s {
        Severity::Error => ("error", "Error"),
        Severity::Warning => ("warning", "Warning"),
    }
}

fn findings_table(out: &mut String, findings: &[&Finding]) {
    out.push_str(
        "<table><tr><th>Severity</th><th>Tag path</th><th>Keyword</th><th>Message</th></tr>\n",
    );
    for f in findings {
        let (cls, label) = sev(f.severity);
        let _ = writeln!(
            out,
            "<tr><td class=\"{cls}\">{label}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            html_escape(&f.tag_path),
            html_escape(&f.keyword),
            html_escape(&f.message)
        );
    }
    out.push_str("</table>\n");
}

fn count(f: &[Finding], s: Severity) -> usize {
    f.iter().filter(|x| x.severity == s).count()
}

/// Renders a self-contained HTML page (inline CSS, no scripts) for a series.
/// Every DICOM-derived string is HTML-escaped.
pub fn render_report_html(
    series_uid: &str,
    series_findings: &[Finding],
    instances: &[InstanceValidation],
) -> String {
    let inst_errors: usize = instances
        .iter()
        .map(|i| count(&i.findings, Severity::Error))
        .sum();
    let inst_warnings: usize = instances
        .iter()
        .map(|i| count(&i.findings, Severity::Warning))
        .sum();
    let errors = inst_errors + count(series_findings, Severity::Error);
    let warnings = inst_warnings + count(series_findings, Severity::Warning);
    let mut iods: BTreeMap<&str, usize> = BTreeMap::new();
    for i in instances {
        *iods
            .entry(i.iod.as_deref().unwrap_or("unknown"))
            .or_default() += 1;
    }
    let iod_text = iods
        .iter()
        .map(|(k, v)| format!("{} ({v})", html_escape(k)))
        .collect::<Vec<_>>()
        .join(", ");

    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>DICOM validation report – {}</title><style>{CSS}</style></head><body>\n",
        html_escape(series_uid)
    );
    let _ = writeln!(
        out,
        "<h1>DICOM validation report</h1>\n<p>Series Instance UID <code>{}</code></p>",
        html_escape(series_uid)
    );
    let _ = writeln!(
        out,
        "<table class=\"summary\" id=\"summary\"><tr><th>Instances checked</th><td id=\"instances\">{}</td></tr>\
<tr><th>Errors</th><td id=\"errors\" class=\"{}\">{errors}</td></tr>\
<tr><th>Warnings</th><td id=\"warnings\" class=\"{}\">{warnings}</td></tr>\
<tr><th>Series-level findings</th><td id=\"series-findings\">{}</td></tr>\
<tr><th>IOD</th><td id=\"iod\">{iod_text}</td></tr>\
<tr><th>Standard</th><td>{}</td></tr></table>",
        instances.len(),
        if errors > 0 { "error" } else { "ok" },
        if warnings > 0 { "warning" } else { "ok" },
        series_findings.len(),
        html_escape(crate::standard_edition()),
    );

    out.push_str("<h2 id=\"series\">Series consistency</h2>\n");
    if series_findings.is_empty() {
        out.push_str("<p class=\"ok\">No series-level findings.</p>\n");
    } else {
        findings_table(&mut out, &series_findings.iter().collect::<Vec<_>>());
    }

    // by module, across instances
    out.push_str("<h2 id=\"by-module\">Findings by module</h2>\n");
    let mut by_module: BTreeMap<&str, Vec<(&str, &Finding)>> = BTreeMap::new();
    for i in instances {
        for f in &i.findings {
            by_module
                .entry(f.module.as_deref().unwrap_or("Encoding (PS3.5 / PS3.6)"))
                .or_default()
                .push((&i.sop_instance_uid, f));
        }
    }
    if by_module.is_empty() {
        out.push_str("<p class=\"ok\">No instance-level findings.</p>\n");
    }
    for (module, list) in &by_module {
        let e = list
            .iter()
            .filter(|(_, f)| f.severity == Severity::Error)
            .count();
        let _ = writeln!(
            out,
            "<h3>{} <small>({e} error(s), {} warning(s))</small></h3>",
            html_escape(module),
            list.len() - e
        );
        out.push_str(
            "<table><tr><th>Severity</th><th>Instance</th><th>Tag path</th><th>Message</th></tr>\n",
        );
        for (uid, f) in list {
            let (cls, label) = sev(f.severity);
            let _ = writeln!(
                out,
                "<tr><td class=\"{cls}\">{label}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                html_escape(uid),
                html_escape(&f.tag_path),
                html_escape(&f.message)
            );
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h2 id=\"by-instance\">Findings by instance</h2>\n");
    for i in instances {
        let _ = writeln!(
            out,
            "<h3 class=\"instance\">Instance <code>{}</code></h3>\n<p>SOP Class <code>{}</code>, IOD {}: {} error(s), {} warning(s)</p>",
            html_escape(&i.sop_instance_uid),
            html_escape(&i.sop_class_uid),
            html_escape(i.iod.as_deref().unwrap_or("unknown")),
            count(&i.findings, Severity::Error),
            count(&i.findings, Severity::Warning)
        );
        if i.findings.is_empty() {
            out.push_str("<p class=\"ok\">No findings.</p>\n");
            continue;
        }
        let mut groups: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
        for f in &i.findings {
            groups
                .entry(f.module.as_deref().unwrap_or("Encoding (PS3.5 / PS3.6)"))
                .or_default()
                .push(f);
        }
        for (m, fs) in groups {
            let _ = writeln!(out, "<h4>{}</h4>", html_escape(m));
            findings_table(&mut out, &fs);
        }
    }
    out.push_str("</body></html>\n");
    out
}
