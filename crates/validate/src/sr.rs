//! The SR Document Content module (PS3.3 C.17.3): a recursive walk of the content tree.
//!
//! The generated table of this module is not usable as it is: the source JSON expands the
//! content item macros that PS3.3 includes only by Value Type ("Include Table C.18-2 Numeric
//! Measurement Macro if Value Type is NUM") as if they were unconditional, merges the three
//! macros that define Referenced SOP Sequence, and stops the recursion of Content Sequence.
//! Which macro goes with which Value Type is therefore written here by hand (2020 edition,
//! Table C.17-5 Document Content Macro, Table C.17-6 Document Relationship Macro, Tables
//! C.18-1 .. C.18-9); the attributes themselves (types, conditions, enumerated values, code
//! sequence items) still come from the generated table of the module.

use crate::tables::{AttrType, Node};
use crate::validator::{to_tag, value_strings, Validator};
use crate::{tag_str, Severity};
use dicom_core::value::Value;
use dicom_object::InMemDicomObject;

const VALUE_TYPE: u32 = 0x0040_A040;
const CONCEPT_NAME_CODE_SEQUENCE: u32 = 0x0040_A043;
const CONTENT_SEQUENCE: u32 = 0x0040_A730;
const RELATIONSHIP_TYPE: u32 = 0x0040_A010;
const REFERENCED_CONTENT_ITEM_IDENTIFIER: u32 = 0x0040_DB73;
const OBSERVATION_DATETIME: u32 = 0x0040_A032;
const OBSERVATION_UID: u32 = 0x0040_A171;
const GRAPHIC_TYPE: u32 = 0x0070_0023;
const TEMPORAL_RANGE_TYPE: u32 = 0x0040_A130;

/// Value Types of the 2020 edition, and TABLE of later ones (accepted; its macro is not checked).
const VALUE_TYPES: &[&str] = &[
    "TEXT",
    "NUM",
    "CODE",
    "DATETIME",
    "DATE",
    "TIME",
    "UIDREF",
    "PNAME",
    "COMPOSITE",
    "IMAGE",
    "WAVEFORM",
    "SCOORD",
    "SCOORD3D",
    "TCOORD",
    "CONTAINER",
    "TABLE",
];

/// Value Types whose Concept Name Code Sequence is required (C.17-5; the other cases, a
/// CONTAINER with a heading or a reference whose purpose is in the concept name, are prose).
const NAMED_VALUE_TYPES: &[&str] = &[
    "TEXT", "NUM", "CODE", "DATETIME", "DATE", "TIME", "UIDREF", "PNAME",
];

use AttrType::{T1, T1C, T2, T3};

/// Value Type → the macro PS3.3 includes for it and the macro's attributes with their types.
/// TEXT, DATETIME, DATE, TIME, PNAME and UIDREF have their value attribute in the Document
/// Content Macro itself (Type 1C, "Required if Value Type is ...").
/// (Value Type, macro name, [(tag, type in the macro)])
type ValueMacro = (&'static str, &'static str, &'static [(u32, AttrType)]);

const VALUE_MACROS: &[ValueMacro] = &[
    ("TEXT", "Document Content Macro", &[(0x0040_A160, T1C)]),
    ("DATETIME", "Document Content Macro", &[(0x0040_A120, T1C)]),
    ("DATE", "Document Content Macro", &[(0x0040_A121, T1C)]),
    ("TIME", "Document Content Macro", &[(0x0040_A122, T1C)]),
    ("PNAME", "Document Content Macro", &[(0x0040_A123, T1C)]),
    ("UIDREF", "Document Content Macro", &[(0x0040_A124, T1C)]),
    (
        "NUM",
        "Numeric Measurement Macro",
        &[(0x0040_A300, T2), (0x0040_A301, T3)],
    ),
    ("CODE", "Code Macro", &[(0x0040_A168, T1)]),
    (
        "COMPOSITE",
        "Composite Object Reference Macro",
        &[(0x0008_1199, T1)],
    ),
    ("IMAGE", "Image Reference Macro", &[(0x0008_1199, T1)]),
    ("WAVEFORM", "Waveform Reference Macro", &[(0x0008_1199, T1)]),
    (
        "SCOORD",
        "Spatial Coordinates Macro",
        &[
            (0x0070_0022, T1),
            (GRAPHIC_TYPE, T1),
            (0x0048_0301, T1C),
            (0x0070_031A, T3),
        ],
    ),
    (
        "SCOORD3D",
        "3D Spatial Coordinates Macro",
        &[
            (0x3006_0024, T1),
            (0x0070_0022, T1),
            (GRAPHIC_TYPE, T1),
            (0x0070_031A, T3),
        ],
    ),
    (
        "TCOORD",
        "Temporal Coordinates Macro",
        &[
            (TEMPORAL_RANGE_TYPE, T1),
            (0x0040_A132, T1C),
            (0x0040_A138, T1C),
            (0x0040_A13A, T1C),
        ],
    ),
    (
        "CONTAINER",
        "Container Macro",
        &[(0x0040_A050, T1), (0x0040_A504, T1C)],
    ),
];

/// Enumerated values that PS3.3 states in section text rather than in the macro tables
/// (C.18.6.1.2, C.18.9.1.2, C.18.7.1.1).
const SECTION_ENUMS: &[(&str, u32, &[&str])] = &[
    (
        "SCOORD",
        GRAPHIC_TYPE,
        &["POINT", "MULTIPOINT", "POLYLINE", "CIRCLE", "ELLIPSE"],
    ),
    (
        "SCOORD3D",
        GRAPHIC_TYPE,
        &[
            "POINT",
            "MULTIPOINT",
            "POLYLINE",
            "POLYGON",
            "ELLIPSE",
            "ELLIPSOID",
        ],
    ),
    (
        "TCOORD",
        TEMPORAL_RANGE_TYPE,
        &[
            "POINT",
            "MULTIPOINT",
            "SEGMENT",
            "MULTISEGMENT",
            "BEGIN",
            "END",
        ],
    ),
];

impl<'t> Validator<'t> {
    /// The generated nodes of the module, by tag: the top level (content item attributes) and
    /// the level of Content Sequence items (Relationship Type, Referenced Content Item Identifier).
    fn sr_node(&self, list: usize, tag: u32) -> Option<&'t Node> {
        let t = self.t;
        t.lists[list]
            .iter()
            .map(|&n| &t.nodes[n])
            .find(|n| n.tag == tag)
    }

    /// Checks the SR Document Content module of `root`, whose generated table is `list`.
    pub(crate) fn check_sr_content(&mut self, list: usize, root: &InMemDicomObject, module: &str) {
        let item_list = self
            .sr_node(list, CONTENT_SEQUENCE)
            .and_then(|n| n.children);
        self.sr_content_item(list, item_list, &[root], "", module, true);
    }

    /// One content item (the root data set, or a Content Sequence item included by value).
    fn sr_content_item(
        &mut self,
        list: usize,
        item_list: Option<usize>,
        stack: &[&InMemDicomObject],
        prefix: &str,
        module: &str,
        is_root: bool,
    ) {
        let ds = stack[0];
        let content = "Document Content Macro";
        // Value Type: Type 1 with the enumerated values (and TABLE of later editions)
        let value_type = match ds.get(to_tag(VALUE_TYPE)) {
            None => {
                if let Some(n) = self.sr_node(list, VALUE_TYPE) {
                    self.check_node(n, T1, stack, prefix, content);
                }
                None
            }
            Some(e) => {
                let v = value_strings(e).into_iter().next();
                match &v {
                    None => {
                        if let Some(n) = self.sr_node(list, VALUE_TYPE) {
                            self.check_node(n, T1, stack, prefix, content);
                        }
                    }
                    Some(v) if !VALUE_TYPES.contains(&v.as_str()) => self.push(
                        Severity::Error,
                        "enum",
                        format!("{prefix}{}", tag_str(to_tag(VALUE_TYPE))),
                        "ValueType".into(),
                        Some(content),
                        format!(
                            "Value \"{v}\" of Value Type (0040,A040) ({content}) is not one of the enumerated values {}",
                            VALUE_TYPES.join(", ")
                        ),
                    ),
                    Some(_) => {}
                }
                v
            }
        };
        let vt = value_type.as_deref().unwrap_or("");
        // Concept Name Code Sequence: Type 1 for the root, 1C by Value Type otherwise
        if let Some(n) = self.sr_node(list, CONCEPT_NAME_CODE_SEQUENCE) {
            let typ = if is_root || NAMED_VALUE_TYPES.contains(&vt) {
                T1
            } else {
                T3
            };
            let typ_shown = if is_root { T1 } else { T1C };
            if typ == T1 && ds.get(to_tag(CONCEPT_NAME_CODE_SEQUENCE)).is_none() {
                let why = if is_root {
                    "required for the root content item".to_string()
                } else {
                    format!("required when Value Type (0040,A040) is {vt}")
                };
                self.push(
                    Severity::Error,
                    "missing",
                    format!("{prefix}{}", tag_str(to_tag(CONCEPT_NAME_CODE_SEQUENCE))),
                    "ConceptNameCodeSequence".into(),
                    Some(content),
                    format!(
                        "Type {} attribute Concept Name Code Sequence (0040,A043) of {content} is missing ({why})",
                        typ_shown.label()
                    ),
                );
            } else {
                self.check_node(n, typ, stack, prefix, content);
            }
        }
        // the macro of the Value Type
        for (_, mac, attrs) in VALUE_MACROS.iter().filter(|(v, _, _)| *v == vt) {
            for &(tag, typ) in attrs.iter() {
                if let Some(n) = self.sr_node(list, tag) {
                    self.check_node(n, typ, stack, prefix, mac);
                }
            }
        }
        for (_, tag, allowed) in SECTION_ENUMS.iter().filter(|(v, _, _)| *v == vt) {
            let Some(e) = ds.get(to_tag(*tag)) else {
                continue;
            };
            let mac = VALUE_MACROS
                .iter()
                .find(|(v, _, _)| *v == vt)
                .map_or(module, |m| m.1);
            for v in value_strings(e) {
                if !allowed.contains(&v.as_str()) {
                    let (name, keyword) = self.attr_name(*tag);
                    self.push(
                        Severity::Error,
                        "enum",
                        format!("{prefix}{}", tag_str(to_tag(*tag))),
                        keyword,
                        Some(mac),
                        format!(
                            "Value \"{v}\" of {name} {} ({mac}) is not one of the enumerated values {}",
                            tag_str(to_tag(*tag)),
                            allowed.join(", ")
                        ),
                    );
                }
            }
        }
        // Document Relationship Macro (Observation DateTime's condition is prose)
        let relationship = "Document Relationship Macro";
        for tag in [OBSERVATION_DATETIME, OBSERVATION_UID] {
            if let Some(n) = self.sr_node(list, tag) {
                self.check_node(n, n.typ, stack, prefix, relationship);
            }
        }
        let Some(Value::Sequence(seq)) = ds.get(to_tag(CONTENT_SEQUENCE)).map(|e| e.value()) else {
            return;
        };
        let path = format!("{prefix}{}", tag_str(to_tag(CONTENT_SEQUENCE)));
        if seq.items().is_empty() {
            self.push(
                Severity::Error,
                "empty",
                path.clone(),
                "ContentSequence".into(),
                Some(relationship),
                format!("Content Sequence (0040,A730) of {relationship} is present but has no items (one or more Items shall be included)"),
            );
        }
        let mut st: Vec<&InMemDicomObject> = Vec::with_capacity(stack.len() + 1);
        st.push(ds);
        st.extend_from_slice(stack);
        for (i, item) in seq.items().iter().enumerate() {
            st[0] = item;
            let p = format!("{path}[{}]/", i + 1);
            if let Some(il) = item_list {
                if let Some(n) = self.sr_node(il, RELATIONSHIP_TYPE) {
                    self.check_node(n, T1, &st, &p, relationship);
                }
                if item
                    .get(to_tag(REFERENCED_CONTENT_ITEM_IDENTIFIER))
                    .is_some()
                {
                    // by-reference: the Document Content and Relationship Macros are not included
                    if let Some(n) = self.sr_node(il, REFERENCED_CONTENT_ITEM_IDENTIFIER) {
                        self.check_node(n, T1, &st, &p, module);
                    }
                    continue;
                }
            }
            self.sr_content_item(list, item_list, &st, &p, module, false);
        }
    }
}
