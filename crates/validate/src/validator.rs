//! The validator of one data set: IOD modules, functional groups, attribute types and
//! conditions, enumerated values and the encoding of every element, against the tables of
//! `tables.rs` (the public entry points are in the crate root).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use dicom_core::header::Header;
use dicom_core::value::Value;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::tables::{self, tables, AttrType, Cond, Tables, Usage};
use crate::{tag_str, vr, Finding, InstanceValidation, Severity};

/// The module whose flattened table is not usable as it is (the source JSON expands the content
/// item macros that PS3.3 includes only by Value Type as if they were unconditional): it is
/// checked by a walk of the content tree with hand-written inclusion rules (`sr.rs`).
const SR_DOCUMENT_CONTENT: &str = "sr-document-content";

fn tag_u32(t: Tag) -> u32 {
    ((t.group() as u32) << 16) | t.element() as u32
}

pub(crate) fn to_tag(t: u32) -> Tag {
    Tag((t >> 16) as u16, (t & 0xFFFF) as u16)
}

pub(crate) fn first_str(ds: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = ds.get(tag)?;
    let v = e.value().primitive()?;
    let s = v.to_multi_str();
    s.first()
        .map(|x| x.trim_end_matches(['\0', ' ']).trim_start().to_string())
}

/// Values of an element as trimmed strings (numbers formatted), empty when the element is empty.
pub(crate) fn value_strings(e: &dicom_object::mem::InMemElement) -> Vec<String> {
    match e.value() {
        Value::Primitive(p) => {
            if matches!(p, dicom_core::PrimitiveValue::Empty) {
                return Vec::new();
            }
            let vr = e.vr().to_string();
            let all: Cow<'_, [String]> = p.to_multi_str();
            let v: Vec<String> = all
                .iter()
                .map(|s| vr::trim_value(vr, s).to_string())
                .collect();
            if v.len() == 1 && v[0].is_empty() {
                Vec::new()
            } else {
                v
            }
        }
        _ => Vec::new(),
    }
}

fn is_empty_element(e: &dicom_object::mem::InMemElement) -> bool {
    match e.value() {
        Value::Primitive(p) => match p {
            dicom_core::PrimitiveValue::Empty => true,
            dicom_core::PrimitiveValue::Strs(_) | dicom_core::PrimitiveValue::Str(_) => {
                value_strings(e).iter().all(|s| s.is_empty())
            }
            _ => p.multiplicity() == 0,
        },
        Value::Sequence(s) => s.items().is_empty(),
        Value::PixelSequence(_) => false,
    }
}

pub(crate) struct Validator<'t> {
    pub(crate) t: &'t Tables,
    explicit_vr: bool,
    has_pixel_data: bool,
    findings: Vec<Finding>,
    seen: HashSet<(String, &'static str)>,
}

/// Validates an already parsed data set (root level, without the file meta group).
pub(crate) fn validate_dataset(
    ds: &InMemDicomObject,
    explicit_vr: bool,
    has_pixel_data: bool,
) -> InstanceValidation {
    let t = tables();
    let sop_class_uid = first_str(ds, tags::SOP_CLASS_UID).unwrap_or_default();
    let sop_instance_uid = first_str(ds, tags::SOP_INSTANCE_UID).unwrap_or_default();
    let mut v = Validator {
        t,
        explicit_vr,
        has_pixel_data,
        findings: Vec::new(),
        seen: HashSet::new(),
    };
    let mut iod_name = None;
    match t.sops.get(&sop_class_uid).and_then(|(_, iod_id)| t.iods.get(iod_id)) {
        Some(iod) => {
            iod_name = Some(iod.name.clone());
            v.check_iod(iod, ds);
        }
        None => v.findings.push(Finding {
            severity: Severity::Warning,
            tag_path: if sop_class_uid.is_empty() { String::new() } else { tag_str(tags::SOP_CLASS_UID) },
            keyword: "SOPClassUID".into(),
            module: None,
            message: if sop_class_uid.is_empty() {
                "SOP Class UID (0008,0016) is missing, so the IOD is unknown; only the encoding was checked".into()
            } else {
                format!(
                    "SOP Class UID \"{sop_class_uid}\" is not a storage SOP Class of the DICOM 2020 tables; only the encoding was checked"
                )
            },
        }),
    }
    v.check_encoding(ds, "");
    InstanceValidation {
        sop_instance_uid,
        sop_class_uid,
        iod: iod_name,
        findings: v.findings,
    }
}

impl<'t> Validator<'t> {
    pub(crate) fn attr_name(&self, tag: u32) -> (String, String) {
        match self.t.dict(tag) {
            Some(e) => (e.name.clone(), e.keyword.clone()),
            None => ("Unknown attribute".into(), String::new()),
        }
    }

    pub(crate) fn push(
        &mut self,
        severity: Severity,
        kind: &'static str,
        tag_path: String,
        keyword: String,
        module: Option<&str>,
        message: String,
    ) {
        if !self.seen.insert((tag_path.clone(), kind)) {
            return;
        }
        self.findings.push(Finding {
            severity,
            tag_path,
            keyword,
            module: module.map(str::to_string),
            message,
        });
    }

    fn check_iod(&mut self, iod: &tables::Iod, root: &InMemDicomObject) {
        let t = self.t;
        // how many modules of this IOD define each top-level tag
        let mut owners: HashMap<u32, usize> = HashMap::new();
        for m in &iod.modules {
            if let Some(module) = t.modules.get(&m.module_id) {
                for &n in &t.lists[module.list] {
                    *owners.entry(t.nodes[n].tag).or_default() += 1;
                }
            }
        }
        for m in &iod.modules {
            let Some(module) = t.modules.get(&m.module_id) else {
                continue;
            };
            let top = &t.lists[module.list];
            let present_any = top.iter().any(|&n| {
                let node = &t.nodes[n];
                node.mask == u32::MAX && self.present(&[root], node.tag)
            });
            let present_own = top.iter().any(|&n| {
                let node = &t.nodes[n];
                node.mask == u32::MAX
                    && owners.get(&node.tag) == Some(&1)
                    && self.present(&[root], node.tag)
            });
            match m.usage {
                Usage::Mandatory => {
                    if !present_any {
                        let has_required = top
                            .iter()
                            .any(|&n| matches!(t.nodes[n].typ, AttrType::T1 | AttrType::T2));
                        if has_required {
                            self.push(
                                Severity::Error,
                                "module",
                                String::new(),
                                String::new(),
                                Some(&module.name),
                                format!("Mandatory module {} is missing: none of its attributes is present", module.name),
                            );
                        }
                        continue;
                    }
                }
                Usage::Conditional | Usage::UserOption => {
                    if !present_own {
                        continue;
                    }
                }
            }
            if m.module_id == SR_DOCUMENT_CONTENT {
                self.check_sr_content(module.list, root, &module.name);
            } else {
                self.check_list(module.list, &[root], "", &module.name);
            }
        }
        if !iod.fg_macros.is_empty() {
            self.check_functional_groups(iod, root);
        }
    }

    /// Functional group macros of an enhanced multi-frame IOD (PS3.3 C.7.6.16): each macro is in
    /// the one item of the Shared Functional Groups Sequence or in every item of the Per-frame
    /// Functional Groups Sequence, not both; mandatory macros (and conditional ones whose
    /// condition holds) must be present; the attributes of every macro found are checked with
    /// the usual type rules. A finding repeated in several per-frame items is reported once, with
    /// the number of other items.
    fn check_functional_groups(&mut self, iod: &tables::Iod, root: &InMemDicomObject) {
        let t = self.t;
        let items = |tag: Tag| -> &[InMemDicomObject] {
            match root.get(tag).map(|e| e.value()) {
                Some(Value::Sequence(s)) => s.items(),
                _ => &[],
            }
        };
        let shared = items(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).first();
        let per_frame = items(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
        if let (Some(e), false) = (root.get(tags::NUMBER_OF_FRAMES), per_frame.is_empty()) {
            let n = value_strings(e)
                .first()
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(n) = n.filter(|&n| n != per_frame.len()) {
                self.push(
                    Severity::Error,
                    "frames",
                    tag_str(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE),
                    "PerFrameFunctionalGroupsSequence".into(),
                    Some("Multi-frame Functional Groups"),
                    format!(
                        "Per-frame Functional Groups Sequence (5200,9230) has {} items, but Number of Frames (0028,0008) is {n}",
                        per_frame.len()
                    ),
                );
            }
        }
        if shared.is_none() && per_frame.is_empty() {
            return; // both sequences missing: reported by the Multi-frame Functional Groups module
        }
        const SHARED: &str = "(5200,9229)[1]/";
        // the first item of every functional group sequence in a shared or per-frame item
        fn group_items(fg: &InMemDicomObject) -> impl Iterator<Item = &InMemDicomObject> {
            fg.iter().filter_map(|e| match e.value() {
                Value::Sequence(s) => s.items().first(),
                _ => None,
            })
        }
        let shared_ctx: Vec<&InMemDicomObject> =
            shared.map(|s| group_items(s).collect()).unwrap_or_default();
        // the stack of each per-frame item: [item, root, its groups' items, the shared groups' items]
        let frame_stacks: Vec<Vec<&InMemDicomObject>> = per_frame
            .iter()
            .map(|item| {
                let mut st = vec![item, root];
                st.extend(group_items(item));
                st.extend_from_slice(&shared_ctx);
                st
            })
            .collect();
        let frame_prefix = |i: usize| format!("(5200,9230)[{}]/", i + 1);
        for m in &iod.fg_macros {
            let Some(mac) = t.macros.get(&m.macro_id) else {
                continue;
            };
            let label = format!("{} Macro", mac.name);
            let top: Vec<&tables::Node> = t.lists[mac.list]
                .iter()
                .map(|&n| &t.nodes[n])
                .filter(|n| n.mask == u32::MAX)
                .collect();
            let has =
                |item: &InMemDicomObject| top.iter().any(|n| item.get(to_tag(n.tag)).is_some());
            let in_shared = shared.is_some_and(&has);
            let with: Vec<usize> = (0..per_frame.len())
                .filter(|&i| has(&per_frame[i]))
                .collect();
            let required = match m.usage {
                Usage::Mandatory => true,
                Usage::Conditional => {
                    m.cond.as_ref().and_then(|c| self.eval(c, &[root])) == Some(true)
                }
                Usage::UserOption => false,
            };
            // the attribute that names the macro in messages: its first Type 1/2 top-level one
            let key = top
                .iter()
                .find(|n| matches!(n.typ, AttrType::T1 | AttrType::T2))
                .or(top.first())
                .copied();
            let Some(key) = key else { continue };
            let (name, keyword) = self.attr_name(key.tag);
            let key_tag = tag_str(to_tag(key.tag));
            if in_shared && !with.is_empty() {
                self.push(
                    Severity::Error,
                    "fg-both",
                    format!("{}{key_tag}", frame_prefix(with[0])),
                    keyword.clone(),
                    Some(&label),
                    format!(
                        "{label} ({name} {key_tag}) is in the Shared Functional Groups Sequence and also in {} of {} Per-frame Functional Groups Sequence items (first: item {}); a functional group is either shared or per-frame",
                        with.len(),
                        per_frame.len(),
                        with[0] + 1
                    ),
                );
            } else if !in_shared && with.is_empty() {
                if required && matches!(key.typ, AttrType::T1 | AttrType::T2) {
                    let why = match m.usage {
                        Usage::Mandatory => "the macro is mandatory for this IOD".to_string(),
                        _ => format!(
                            "the macro is required for this IOD: {}",
                            m.condition.trim_end_matches('.')
                        ),
                    };
                    let path = if per_frame.is_empty() {
                        format!("{SHARED}{key_tag}")
                    } else {
                        format!("{}{key_tag}", frame_prefix(0))
                    };
                    self.push(
                        Severity::Error,
                        "missing",
                        path,
                        keyword.clone(),
                        Some(&label),
                        format!(
                            "Type {} attribute {name} {key_tag} of {label} is missing from the Shared Functional Groups Sequence item and from every Per-frame Functional Groups Sequence item ({why})",
                            key.typ.label()
                        ),
                    );
                }
            } else if !in_shared && with.len() < per_frame.len() {
                let missing: Vec<usize> = (0..per_frame.len())
                    .filter(|i| with.binary_search(i).is_err())
                    .collect();
                self.push(
                    Severity::Error,
                    "missing",
                    format!("{}{key_tag}", frame_prefix(missing[0])),
                    keyword.clone(),
                    Some(&label),
                    format!(
                        "Type {} attribute {name} {key_tag} of {label} is missing from {} of {} Per-frame Functional Groups Sequence items (first: item {}); a per-frame functional group must be in every item",
                        key.typ.label(),
                        missing.len(),
                        per_frame.len(),
                        missing[0] + 1
                    ),
                );
            }
            // Conditions speak of attributes "of this frame", which live in the items of the
            // other functional groups of the same frame: they come after root on the stack.
            if in_shared {
                if let Some(s) = shared {
                    let mut st = vec![s, root];
                    st.extend_from_slice(&shared_ctx);
                    self.check_list(mac.list, &st, SHARED, &label);
                }
            }
            if !with.is_empty() {
                let before = self.findings.len();
                for &i in &with {
                    self.check_list(mac.list, &frame_stacks[i], &frame_prefix(i), &label);
                }
                self.fold_per_frame(before);
            }
        }
    }

    /// Folds findings from `start` on that differ only by the per-frame item index into the
    /// first of them, which gains "(also in N other per-frame items)".
    fn fold_per_frame(&mut self, start: usize) {
        if self.findings.len() - start < 2 {
            return;
        }
        let tail = self.findings.split_off(start);
        let mut order: Vec<(String, Finding, usize)> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        for f in tail {
            let generic = match f.tag_path.strip_prefix("(5200,9230)[") {
                Some(rest) => rest
                    .split_once(']')
                    .map_or(f.tag_path.clone(), |(_, r)| r.to_string()),
                None => f.tag_path.clone(),
            };
            match index.get(&(generic.clone(), f.message.clone())) {
                Some(&i) => order[i].2 += 1,
                None => {
                    index.insert((generic.clone(), f.message.clone()), order.len());
                    order.push((generic, f, 0));
                }
            }
        }
        for (_, mut f, others) in order {
            if others > 0 {
                f.message.push_str(&format!(
                    " (also in {others} other Per-frame Functional Groups Sequence item{})",
                    if others == 1 { "" } else { "s" }
                ));
            }
            self.findings.push(f);
        }
    }

    fn find<'a>(
        &self,
        stack: &[&'a InMemDicomObject],
        tag: u32,
    ) -> Option<&'a dicom_object::mem::InMemElement> {
        let tag = to_tag(tag);
        stack.iter().find_map(|ds| ds.get(tag))
    }

    fn present(&self, stack: &[&InMemDicomObject], tag: u32) -> bool {
        if tag == tag_u32(tags::PIXEL_DATA) && stack.len() == 1 {
            return self.has_pixel_data;
        }
        stack
            .first()
            .is_some_and(|ds| ds.get(to_tag(tag)).is_some())
    }

    /// Evaluates a parsed condition; `None` when it cannot be decided.
    /// Attributes are looked up in the current item, then in the enclosing data sets.
    fn eval(&self, c: &Cond, stack: &[&InMemDicomObject]) -> Option<bool> {
        let found = |tag: u32| -> bool {
            if tag == tag_u32(tags::PIXEL_DATA) && self.has_pixel_data {
                return true;
            }
            self.find(stack, tag).is_some()
        };
        Some(match c {
            Cond::Present(tag) => found(*tag),
            Cond::NotPresent(tag) => !found(*tag),
            Cond::Equals(tag, values, idx) => match self.find(stack, *tag) {
                None => false,
                Some(e) => {
                    let vals = value_strings(e);
                    let hit = |s: &String| values.iter().any(|v| v == s || num_eq(v, s));
                    if *idx == 0 {
                        vals.iter().any(hit)
                    } else {
                        vals.get(idx - 1).is_some_and(hit)
                    }
                }
            },
            Cond::NotEquals(tag, values, idx) => match self.find(stack, *tag) {
                None => false,
                Some(e) => {
                    let vals = value_strings(e);
                    let v = vals.get(idx.saturating_sub(1));
                    v.is_some_and(|s| !values.iter().any(|x| x == s || num_eq(x, s)))
                }
            },
            Cond::HasValue(tag) => {
                if *tag == tag_u32(tags::PIXEL_DATA) && self.has_pixel_data {
                    return Some(true);
                }
                self.find(stack, *tag).is_some_and(|e| !is_empty_element(e))
            }
            Cond::Greater(tag, n) => match self.find(stack, *tag) {
                None => false,
                Some(e) => value_strings(e)
                    .first()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .is_some_and(|x| x > *n),
            },
            Cond::And(cs) => {
                let mut all = true;
                for c in cs {
                    match self.eval(c, stack) {
                        Some(false) => return Some(false),
                        Some(true) => {}
                        None => all = false,
                    }
                }
                if all {
                    true
                } else {
                    return None;
                }
            }
            Cond::Or(cs) => {
                let mut unknown = false;
                for c in cs {
                    match self.eval(c, stack) {
                        Some(true) => return Some(true),
                        Some(false) => {}
                        None => unknown = true,
                    }
                }
                if unknown {
                    return None;
                }
                false
            }
        })
    }

    fn check_list(&mut self, list: usize, stack: &[&InMemDicomObject], prefix: &str, module: &str) {
        let t = self.t;
        for &ni in &t.lists[list] {
            let node = &t.nodes[ni];
            if node.mask != u32::MAX {
                continue; // repeating groups (overlays, curves): not checked
            }
            self.check_node(node, node.typ, stack, prefix, module);
        }
    }

    /// One attribute of a table, as Type `typ` (the node's own type, or the one a caller
    /// imposes: the SR content item macros), in the data set `stack[0]`.
    pub(crate) fn check_node(
        &mut self,
        node: &tables::Node,
        typ: AttrType,
        stack: &[&InMemDicomObject],
        prefix: &str,
        module: &str,
    ) {
        let t = self.t;
        let tag = node.tag;
        let element = if tag == tag_u32(tags::PIXEL_DATA) && stack.len() == 1 {
            None
        } else {
            stack[0].get(to_tag(tag))
        };
        let is_present = element.is_some() || self.present(stack, tag);
        let conditional = matches!(typ, AttrType::T1C | AttrType::T2C);
        if is_present && typ == AttrType::T2C {
            // present: a 2C has nothing more to satisfy than a 3
        } else if !is_present || conditional {
            let (cond_text, required) = match typ {
                AttrType::T1 | AttrType::T2 => (None, true),
                AttrType::T3 => (None, false),
                AttrType::T1C | AttrType::T2C => match node.cond.map(|c| &t.conds[c]) {
                    Some((text, Some(c))) => {
                        (Some(text.as_str()), self.eval(c, stack) == Some(true))
                    }
                    _ => (None, false),
                },
            };
            if !is_present {
                if required {
                    // strings are made only for findings: most attributes have none
                    let because = cond_text
                        .map(|c| format!(" ({})", c.trim_end_matches('.')))
                        .unwrap_or_default();
                    let (name, keyword) = self.attr_name(tag);
                    self.push(
                        Severity::Error,
                        "missing",
                        format!("{prefix}{}", tag_str(to_tag(tag))),
                        keyword,
                        Some(module),
                        format!(
                            "Type {} attribute {name} {} of {} is missing{because}",
                            typ.label(),
                            tag_str(to_tag(tag)),
                            of_module(module)
                        ),
                    );
                }
                return;
            }
            if !required {
                // a 1C whose condition does not hold (or is unknown) may be present empty
                self.check_present(node, typ, element, stack, prefix, module, false);
                return;
            }
        }
        self.check_present(
            node,
            typ,
            element,
            stack,
            prefix,
            module,
            typ.must_have_value(),
        );
    }

    /// The checks of an attribute that is present: value when `need_value`, enumerated values,
    /// the items of a sequence.
    #[allow(clippy::too_many_arguments)]
    fn check_present(
        &mut self,
        node: &tables::Node,
        typ: AttrType,
        element: Option<&dicom_object::mem::InMemElement>,
        stack: &[&InMemDicomObject],
        prefix: &str,
        module: &str,
        need_value: bool,
    ) {
        let t = self.t;
        let Some(e) = element else { return };
        let tag = node.tag;
        let path = || format!("{prefix}{}", tag_str(to_tag(tag)));
        let of = || of_module(module);
        if need_value && is_empty_element(e) {
            let (name, keyword) = self.attr_name(tag);
            self.push(
                Severity::Error,
                "empty",
                path(),
                keyword,
                Some(module),
                format!(
                    "Type {} attribute {name} {} of {} is present but has no value{}",
                    typ.label(),
                    tag_str(to_tag(tag)),
                    of(),
                    if matches!(e.value(), Value::Sequence(_)) {
                        " (the sequence has no items)"
                    } else {
                        ""
                    }
                ),
            );
        }
        if let Some(ei) = node.enums {
            let allowed = &t.enums[ei];
            let binary = is_binary_number(e.vr().to_string());
            for v in value_strings(e) {
                if v.is_empty() || allowed.iter().any(|a| *a == v || (binary && num_eq(a, &v))) {
                    continue;
                }
                let (name, keyword) = self.attr_name(tag);
                self.push(
                    Severity::Error,
                    "enum",
                    path(),
                    keyword,
                    Some(module),
                    format!(
                        "Value \"{v}\" of {name} {} ({}) is not one of the enumerated values {}",
                        tag_str(to_tag(tag)),
                        of(),
                        allowed.join(", ")
                    ),
                );
            }
        }
        if let (Some(ci), Value::Sequence(seq)) = (node.children, e.value()) {
            let path = path();
            let mut st: Vec<&InMemDicomObject> = Vec::with_capacity(stack.len() + 1);
            st.push(stack[0]);
            st.extend_from_slice(stack);
            for (i, item) in seq.items().iter().enumerate() {
                st[0] = item;
                let p = format!("{path}[{}]/", i + 1);
                self.check_list(ci, &st, &p, module);
            }
        }
    }

    fn check_encoding(&mut self, ds: &InMemDicomObject, prefix: &str) {
        for e in ds {
            let tag = e.tag();
            if tag.group() % 2 == 1 {
                continue; // private
            }
            let tu = tag_u32(tag);
            let path = || format!("{prefix}{}", tag_str(tag));
            let vr = e.vr().to_string();
            let t = self.t;
            match t.dict(tu) {
                None => {
                    let msg = if tag.element() == 0 {
                        format!("Group length {} is present; group lengths are retired outside the command and file meta groups", tag_str(tag))
                    } else {
                        format!(
                            "Attribute {} is not in the DICOM data dictionary",
                            tag_str(tag)
                        )
                    };
                    self.push(
                        Severity::Warning,
                        "unknown",
                        path(),
                        String::new(),
                        None,
                        msg,
                    );
                }
                Some(d) => {
                    if d.retired {
                        self.push(
                            Severity::Warning,
                            "retired",
                            path(),
                            d.keyword.clone(),
                            None,
                            format!("Attribute {} {} is retired", d.name, tag_str(tag)),
                        );
                    }
                    let allowed: Vec<&str> = d.vr.split(" or ").map(str::trim).collect();
                    let dict_vr_known = allowed.iter().all(|a| a.len() == 2);
                    if self.explicit_vr && dict_vr_known && !allowed.contains(&vr) {
                        let (sev, kind) = if vr == "UN" {
                            (Severity::Warning, "vr-un")
                        } else {
                            (Severity::Error, "vr")
                        };
                        self.push(
                            sev,
                            kind,
                            path(),
                            d.keyword.clone(),
                            None,
                            format!("{} {} is encoded with VR {vr}, but the data dictionary specifies {}", d.name, tag_str(tag), d.vr),
                        );
                    }
                    if let Value::Primitive(p) = e.value() {
                        let vm_applies = !matches!(
                            vr,
                            "OB" | "OW"
                                | "OF"
                                | "OD"
                                | "OL"
                                | "OV"
                                | "UN"
                                | "SQ"
                                | "ST"
                                | "LT"
                                | "UT"
                                | "UR"
                        );
                        let n = if matches!(p, dicom_core::PrimitiveValue::Empty) {
                            0
                        } else {
                            p.multiplicity() as usize
                        };
                        if vm_applies && !vr::vm_ok(&d.vm, n) {
                            self.push(
                                Severity::Error,
                                "vm",
                                path(),
                                d.keyword.clone(),
                                None,
                                format!(
                                    "{} {} has {n} values, but the data dictionary specifies VM {}",
                                    d.name,
                                    tag_str(tag),
                                    d.vm
                                ),
                            );
                        }
                        if matches!(
                            p,
                            dicom_core::PrimitiveValue::Strs(_)
                                | dicom_core::PrimitiveValue::Str(_)
                        ) {
                            for v in value_strings(e) {
                                if v.is_empty() {
                                    continue;
                                }
                                if let Some(problem) = vr::check_value(vr, &v) {
                                    self.push(
                                        Severity::Error,
                                        "format",
                                        path(),
                                        d.keyword.clone(),
                                        None,
                                        format!(
                                            "Value \"{v}\" of {} {} (VR {vr}) {problem}",
                                            d.name,
                                            tag_str(tag)
                                        ),
                                    );
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            if let Value::Sequence(seq) = e.value() {
                for (i, item) in seq.items().iter().enumerate() {
                    self.check_encoding(item, &format!("{}[{}]/", path(), i + 1));
                }
            }
        }
    }
}

/// "module General Series", "Pixel Measures Macro"
fn of_module(module: &str) -> String {
    if module.ends_with(" Macro") {
        module.to_string()
    } else {
        format!("module {module}")
    }
}

fn is_binary_number(vr: &str) -> bool {
    matches!(vr, "US" | "SS" | "UL" | "SL" | "FL" | "FD" | "SV" | "UV")
}

fn num_eq(a: &str, b: &str) -> bool {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
