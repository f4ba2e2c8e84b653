//! An audit event as a DICOM Audit Message (PS3.15 A.5): the XML of the schema in A.5.1.1,
//! with the event codes of A.5.3 chosen from what the event was.

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;
use radport_catalog::{AuditEvent, Outcome};

/// Who reports the events: this radport.
#[derive(Clone, Debug)]
pub struct AuditSource {
    /// `AuditSourceID`: names this node (default `radport@<host>`).
    pub source_id: String,
    /// The host name the node is known by (its `ActiveParticipant`'s network access point).
    pub host: String,
    /// The node's AE title (its `ActiveParticipant`'s user ID).
    pub ae_title: String,
}

/// A code of DICOM's DCM coding scheme (PS3.16): code value and meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code(pub &'static str, pub &'static str);

/// What kind of DICOM audit event an audit-trail event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    /// `EventID`.
    pub event: Code,
    /// `EventTypeCode`, if the event has one.
    pub event_type: Option<Code>,
    /// `EventActionCode`: C, R, U, D or E.
    pub action: char,
}

const APPLICATION_ACTIVITY: Code = Code("110100", "Application Activity");
const INSTANCES_ACCESSED: Code = Code("110103", "DICOM Instances Accessed");
const INSTANCES_TRANSFERRED: Code = Code("110104", "DICOM Instances Transferred");
const STUDY_DELETED: Code = Code("110105", "DICOM Study Deleted");
const EXPORT: Code = Code("110106", "Export");
const IMPORT: Code = Code("110107", "Import");
const QUERY: Code = Code("110112", "Query");
const SECURITY_ALERT: Code = Code("110113", "Security Alert");
const USER_AUTHENTICATION: Code = Code("110114", "User Authentication");
const APPLICATION_START: Code = Code("110120", "Application Start");
const APPLICATION_STOP: Code = Code("110121", "Application Stop");
const LOGIN: Code = Code("110122", "Login");
const LOGOUT: Code = Code("110123", "Logout");
const SECURITY_CONFIGURATION: Code = Code("110129", "Security Configuration");
const SECURITY_ROLES_CHANGED: Code = Code("110136", "Security Roles Changed");
const USER_SECURITY_ATTRIBUTES_CHANGED: Code = Code("110137", "User security Attributes Changed");

/// The audit-trail action of an application start (`radport serve` records it).
pub const APPLICATION_START_ACTION: &str = "application start";
/// The audit-trail action of an application stop.
pub const APPLICATION_STOP_ACTION: &str = "application stop";

/// The DICOM event of an audit-trail action (see the table in docs/access.md).
pub fn kind_of(action: &str) -> Kind {
    let kind = |event, event_type, action| Kind {
        event,
        event_type,
        action,
    };
    let route = action.split_once(' ').map_or("", |(_, r)| r);
    match action {
        "sign-in" => kind(USER_AUTHENTICATION, Some(LOGIN), 'E'),
        "DELETE /api/session" => kind(USER_AUTHENTICATION, Some(LOGOUT), 'E'),
        APPLICATION_START_ACTION => kind(APPLICATION_ACTIVITY, Some(APPLICATION_START), 'E'),
        APPLICATION_STOP_ACTION => kind(APPLICATION_ACTIVITY, Some(APPLICATION_STOP), 'E'),
        "read series" | "view frame" | "read validation report" => {
            kind(INSTANCES_ACCESSED, None, 'R')
        }
        "download instance" | "download series" | "download file" => kind(EXPORT, None, 'R'),
        "associate" => kind(INSTANCES_TRANSFERRED, None, 'C'),
        "C-FIND" => kind(QUERY, None, 'E'),
        "C-GET" | "C-MOVE" => kind(INSTANCES_TRANSFERRED, None, 'R'),
        _ if action.starts_with("DELETE ")
            && (route.starts_with("/api/series/")
                || route.starts_with("/api/studies/")
                || route.starts_with("/api/patients/")
                || route == "/api/projects/{project}") =>
        {
            kind(STUDY_DELETED, None, 'D')
        }
        _ if route.starts_with("/api/uploads") || route.starts_with("/api/workflows/") => {
            kind(IMPORT, None, 'C')
        }
        _ if route.starts_with("/api/series/")
            || route.starts_with("/api/projects/{project}/series") =>
        {
            kind(INSTANCES_ACCESSED, None, 'U')
        }
        _ if route.contains("/members") => kind(SECURITY_ALERT, Some(SECURITY_ROLES_CHANGED), 'U'),
        _ if route.starts_with("/api/users")
            || route.starts_with("/api/tokens")
            || route.starts_with("/api/session") =>
        {
            kind(SECURITY_ALERT, Some(USER_SECURITY_ATTRIBUTES_CHANGED), 'U')
        }
        _ if route.starts_with("/api/projects") => {
            kind(SECURITY_ALERT, Some(SECURITY_CONFIGURATION), 'U')
        }
        _ => kind(APPLICATION_ACTIVITY, None, 'E'),
    }
}

/// The `EventOutcomeIndicator` of an outcome: 0 success, 4 minor failure (refused or failed).
fn outcome_indicator(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "0",
        Outcome::Refused | Outcome::Failure => "4",
    }
}

/// A value of an attribute of type `token`: no leading, trailing or repeated white space.
fn token(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

type XmlResult = Result<(), quick_xml::Error>;

fn coded(w: &mut Writer<Vec<u8>>, element: &str, code: Code) -> XmlResult {
    let mut e = BytesStart::new(element);
    e.push_attribute(("csd-code", code.0));
    e.push_attribute(("codeSystemName", "DCM"));
    e.push_attribute(("originalText", code.1));
    w.write_event(Event::Empty(e))?;
    Ok(())
}

fn text_element(w: &mut Writer<Vec<u8>>, element: &str, text: &str) -> XmlResult {
    w.write_event(Event::Start(BytesStart::new(element)))?;
    w.write_event(Event::Text(BytesText::new(text)))?;
    w.write_event(Event::End(BytesEnd::new(element)))?;
    Ok(())
}

/// The DICOM Audit Message of `event` (UTF-8 XML).
pub fn audit_message(event: &AuditEvent, source: &AuditSource) -> String {
    let bytes = write_message(event, source).unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

fn write_message(event: &AuditEvent, source: &AuditSource) -> Result<Vec<u8>, quick_xml::Error> {
    let kind = kind_of(&event.action);
    let mut w = Writer::new(Vec::new());
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    w.write_event(Event::Start(BytesStart::new("AuditMessage")))?;

    let mut identification = BytesStart::new("EventIdentification");
    let action = kind.action.to_string();
    identification.push_attribute(("EventActionCode", action.as_str()));
    identification.push_attribute(("EventDateTime", event.at.as_str()));
    identification.push_attribute(("EventOutcomeIndicator", outcome_indicator(event.outcome)));
    w.write_event(Event::Start(identification))?;
    coded(&mut w, "EventID", kind.event)?;
    if let Some(t) = kind.event_type {
        coded(&mut w, "EventTypeCode", t)?;
    }
    // What happened, in radport's words: the action, its outcome and detail (a status).
    let description = format!(
        "{}: {} ({})",
        event.action,
        event.outcome.as_str(),
        event.detail
    );
    text_element(&mut w, "EventOutcomeDescription", &description)?;
    w.write_event(Event::End(BytesEnd::new("EventIdentification")))?;

    // The requestor: who did it, from where.
    let mut requestor = BytesStart::new("ActiveParticipant");
    requestor.push_attribute(("UserID", event.actor.as_str()));
    requestor.push_attribute(("UserIsRequestor", "true"));
    let address = token(&event.address);
    if event.address.parse::<std::net::IpAddr>().is_ok() {
        requestor.push_attribute(("NetworkAccessPointID", address.as_str()));
        requestor.push_attribute(("NetworkAccessPointTypeCode", "2"));
    }
    w.write_event(Event::Empty(requestor))?;
    // radport itself.
    let mut this = BytesStart::new("ActiveParticipant");
    this.push_attribute(("UserID", source.ae_title.as_str()));
    this.push_attribute(("UserIsRequestor", "false"));
    let host = token(&source.host);
    if !host.is_empty() {
        this.push_attribute(("NetworkAccessPointID", host.as_str()));
        this.push_attribute(("NetworkAccessPointTypeCode", "1"));
    }
    w.write_event(Event::Empty(this))?;

    let mut audit_source = BytesStart::new("AuditSourceIdentification");
    let source_id = token(&source.source_id);
    audit_source.push_attribute(("AuditSourceID", source_id.as_str()));
    w.write_event(Event::Start(audit_source))?;
    // 4: application server process.
    let mut type_code = BytesStart::new("AuditSourceTypeCode");
    type_code.push_attribute(("csd-code", "4"));
    w.write_event(Event::Empty(type_code))?;
    w.write_event(Event::End(BytesEnd::new("AuditSourceIdentification")))?;

    // On what: the route's parameters (UIDs, a project, a user; a patient only as a digest).
    let target = token(&event.target);
    if !target.is_empty() {
        let mut object = BytesStart::new("ParticipantObjectIdentification");
        object.push_attribute(("ParticipantObjectID", target.as_str()));
        object.push_attribute(("ParticipantObjectTypeCode", "2"));
        w.write_event(Event::Start(object))?;
        let mut id_type = BytesStart::new("ParticipantObjectIDTypeCode");
        id_type.push_attribute(("csd-code", "target"));
        id_type.push_attribute(("codeSystemName", "radport"));
        id_type.push_attribute(("originalText", "route parameters"));
        w.write_event(Event::Empty(id_type))?;
        text_element(&mut w, "ParticipantObjectName", &token(&event.action))?;
        w.write_event(Event::End(BytesEnd::new("ParticipantObjectIdentification")))?;
    }
    w.write_event(Event::End(BytesEnd::new("AuditMessage")))?;
    Ok(w.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, target: &str, actor: &str) -> AuditEvent {
        AuditEvent {
            id: "1".into(),
            at: "2026-12-02T16:00:00.000000Z".into(),
            actor: actor.into(),
            address: "10.1.2.3".into(),
            action: action.into(),
            target: target.into(),
            outcome: Outcome::Success,
            detail: "200".into(),
        }
    }

    #[test]
    fn actions_map_to_dicom_events() {
        assert_eq!(kind_of("sign-in").event_type, Some(LOGIN));
        assert_eq!(kind_of("read series").event, INSTANCES_ACCESSED);
        assert_eq!(kind_of("download series").event, EXPORT);
        assert_eq!(kind_of("associate").event, INSTANCES_TRANSFERRED);
        assert_eq!(kind_of("C-FIND").event, QUERY);
        assert_eq!(kind_of("C-MOVE").action, 'R');
        let erase = kind_of("DELETE /api/patients/{patient_id}");
        assert_eq!((erase.event, erase.action), (STUDY_DELETED, 'D'));
        assert_eq!(kind_of("POST /api/uploads").event, IMPORT);
        assert_eq!(
            kind_of("PUT /api/projects/{project}/members/{user}").event_type,
            Some(SECURITY_ROLES_CHANGED)
        );
        assert_eq!(kind_of("POST /api/series/{series_uid}/move").action, 'U');
        assert_eq!(kind_of("something new").event, APPLICATION_ACTIVITY);
    }

    #[test]
    fn values_are_escaped() {
        let source = AuditSource {
            source_id: "radport@pacs".into(),
            host: "pacs".into(),
            ae_title: "RADPORT".into(),
        };
        let xml = audit_message(&event("read series", "1.2.3", "a\"<b>&'c"), &source);
        assert!(
            xml.contains("UserID=\"a&quot;&lt;b&gt;&amp;&apos;c\""),
            "{xml}"
        );
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><AuditMessage>"));
        assert!(xml.contains("csd-code=\"110103\""));
    }
}
