//! Loading of the generated standard tables (see `tools/gen-dicom-tables.py`).

use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

const IODS_JSON: &str = include_str!("../data/iods.json");
const MODULES_JSON: &str = include_str!("../data/modules.json");
const DICTIONARY_JSON: &str = include_str!("../data/dictionary.json");

/// Module usage within an IOD (PS3.3 A.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// M: required in every instance of the IOD.
    Mandatory,
    /// C: required under the condition the IOD table states.
    Conditional,
    /// U: optional. A usage other than M or C in the tables reads as this too.
    UserOption,
}

/// A row of the module table of an IOD (PS3.3 A): which module, and its usage.
#[derive(Debug)]
pub struct IodModule {
    /// Key of the module in [`Tables::modules`] (e.g. `general-series`).
    pub module_id: String,
    /// M, C or U.
    pub usage: Usage,
    /// Condition of a C module as the table writes it (empty for M and U); never evaluated, as a
    /// conditional module is checked only when present.
    pub condition: String,
}

/// A functional group macro of an enhanced multi-frame IOD (PS3.3 "... Functional Group Macros"
/// table of the IOD): its usage and, for "C", the condition (parsed when it is a common form).
#[derive(Debug)]
pub struct FgMacro {
    /// Key of the macro in [`Tables::macros`] (e.g. `pixel-measures`).
    pub macro_id: String,
    /// M, C or U.
    pub usage: Usage,
    /// Condition of a C macro as the table writes it (empty for M and U); quoted in the finding
    /// of a required macro that is missing.
    pub condition: String,
    /// `condition` parsed; `None` when the usage is not C or the condition is not one of the
    /// parseable forms.
    pub cond: Option<Cond>,
}

/// An IOD of PS3.3 (its module table and, for an enhanced multi-frame IOD, its functional group
/// macros).
#[derive(Debug)]
pub struct Iod {
    /// Name as PS3.3 writes it (e.g. `CT Image`), reported as [`crate::InstanceValidation::iod`].
    pub name: String,
    /// The rows of the IOD's module table, in the table's order.
    pub modules: Vec<IodModule>,
    /// empty unless the IOD uses the Multi-frame Functional Groups module
    pub fg_macros: Vec<FgMacro>,
}

/// The attribute table of a PS3.3 module or functional group macro, with macros expanded.
#[derive(Debug)]
pub struct Module {
    /// Name as PS3.3 writes it, without "Module" or "Macro" (e.g. `General Series`); the
    /// [`crate::Finding::module`] of the findings of its rules.
    pub name: String,
    /// Index in [`Tables::lists`] of the top-level attributes of the table.
    pub list: usize,
}

/// Attribute type within a module (PS3.5 7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrType {
    /// Type 1: required, with a value.
    T1,
    /// Type 1C: as Type 1 when its condition holds.
    T1C,
    /// Type 2: required, possibly empty (zero length).
    T2,
    /// Type 2C: as Type 2 when its condition holds.
    T2C,
    /// Type 3: optional. A type other than 1, 1C, 2 or 2C in the tables reads as this too.
    T3,
}

impl AttrType {
    /// The type as PS3.3 tables write it: `1`, `1C`, `2`, `2C` or `3`.
    pub fn label(self) -> &'static str {
        match self {
            AttrType::T1 => "1",
            AttrType::T1C => "1C",
            AttrType::T2 => "2",
            AttrType::T2C => "2C",
            AttrType::T3 => "3",
        }
    }
    /// Whether a present attribute of this type must have a value: Types 1 and 1C (for a 1C,
    /// when its condition holds).
    pub fn must_have_value(self) -> bool {
        matches!(self, AttrType::T1 | AttrType::T1C)
    }
}

/// A parsed 1C/2C condition.
#[derive(Clone, Debug)]
pub enum Cond {
    /// The attribute with this tag (`group << 16 | element`) is present.
    Present(u32),
    /// The attribute with this tag is absent.
    NotPresent(u32),
    /// tag, accepted values, 1-based value index (0 = any value)
    Equals(u32, Vec<String>, usize),
    /// present with a value (the indexed one, or the first) that is none of the values
    NotEquals(u32, Vec<String>, usize),
    /// present and not empty
    HasValue(u32),
    /// The first value of the attribute is a number greater than this one.
    Greater(u32, f64),
    /// Every condition holds.
    And(Vec<Cond>),
    /// At least one condition holds.
    Or(Vec<Cond>),
}

/// An attribute row of a module or macro table, with indexes into the shared lists of
/// [`Tables`] (`None` where the row has nothing there).
#[derive(Debug)]
pub struct Node {
    /// Tag as `group << 16 | element`; for a repeating group, only the bits of `mask` are set.
    pub tag: u32,
    /// bits that must match (`0xFFFF_FFFF` unless the table uses a repeating group such as 60xx)
    pub mask: u32,
    /// Attribute type in this table.
    pub typ: AttrType,
    /// Index in [`Tables::conds`] of the condition of a Type 1C or 2C attribute.
    pub cond: Option<usize>,
    /// Index in [`Tables::enums`] of the enumerated values, when the table states them as one
    /// plain "Enumerated Values:" list.
    pub enums: Option<usize>,
    /// Index in [`Tables::lists`] of the attributes of the items of a sequence.
    pub children: Option<usize>,
}

/// An entry of the PS3.6 data dictionary.
#[derive(Debug, Clone)]
pub struct DictEntry {
    /// Keyword (e.g. `PatientName`); empty for the few entries PS3.6 gives none.
    pub keyword: String,
    /// Attribute name (e.g. `Patient's Name`); empty for the few entries PS3.6 gives none.
    pub name: String,
    /// Value Representation as PS3.6 writes it: one VR (`CS`), alternatives (`US or SS`), or
    /// text that is no VR (`See Note 2`, empty).
    pub vr: String,
    /// Value Multiplicity as PS3.6 writes it (`1`, `1-n`, `2-2n`, ...); empty for the few entries
    /// PS3.6 gives none.
    pub vm: String,
    /// Whether PS3.6 marks the attribute retired.
    pub retired: bool,
}

/// The standard's tables, as generated under `data/`: SOP classes, IODs, the attribute tables of
/// modules and functional group macros, and the data dictionary.
#[derive(Debug)]
pub struct Tables {
    /// Edition and source of the tables (`DICOM 2020 edition, via PyPI dicom-standard 0.1.0 ...`).
    pub edition: String,
    /// SOP Class UID → (SOP Class name, key of its IOD in `iods`), for the PS3.4 SOP classes
    /// that have an IOD in PS3.3.
    pub sops: HashMap<String, (String, String)>,
    /// IODs by the id of the JSON rendition (e.g. `ct-image`).
    pub iods: HashMap<String, Iod>,
    /// Modules by the id of the JSON rendition (e.g. `general-series`).
    pub modules: HashMap<String, Module>,
    /// functional group macros (same shape as modules: a name and a top-level node list)
    pub macros: HashMap<String, Module>,
    /// Attribute lists (a table's top level, a sequence's items) as indexes in `nodes`;
    /// identical lists are stored once.
    pub lists: Vec<Vec<usize>>,
    /// Attribute rows of all the tables; identical rows are stored once.
    pub nodes: Vec<Node>,
    /// Type 1C/2C conditions: the condition sentence of the table ("Required if ...", empty when
    /// none was found) and its parsed form, `None` when it is not one of the parseable forms.
    pub conds: Vec<(String, Option<Cond>)>,
    /// Enumerated value lists; a value PS3.3 writes in hex (`0001H`) is stored in decimal.
    pub enums: Vec<Vec<String>>,
    dict: HashMap<u32, DictEntry>,
    dict_masked: Vec<(u32, u32, DictEntry)>,
}

/// Parses "00100010" or "60xx3000" into (value, mask).
pub fn parse_tag_pattern(s: &str) -> Option<(u32, u32)> {
    if s.len() != 8 {
        return None;
    }
    let mut v = 0u32;
    let mut m = 0u32;
    for c in s.chars() {
        v <<= 4;
        m <<= 4;
        if let Some(d) = c.to_digit(16) {
            v |= d;
            m |= 0xF;
        } else if c != 'x' && c != 'X' {
            return None;
        }
    }
    Some((v, m))
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn idx(v: &Value) -> Option<usize> {
    v.as_i64().and_then(|i| usize::try_from(i).ok())
}

fn parse_cond(v: &Value) -> Option<Cond> {
    let a = v.as_array()?;
    let kind = a.first()?.as_str()?;
    let tag = || {
        a.get(1)
            .and_then(|t| t.as_str())
            .and_then(parse_tag_pattern)
            .map(|t| t.0)
    };
    Some(match kind {
        "p" => Cond::Present(tag()?),
        "np" => Cond::NotPresent(tag()?),
        "eq" => Cond::Equals(
            tag()?,
            a.get(2)?.as_array()?.iter().map(s).collect(),
            a.get(3).and_then(idx).unwrap_or(0),
        ),
        "ne" => Cond::NotEquals(
            tag()?,
            a.get(2)?.as_array()?.iter().map(s).collect(),
            a.get(3).and_then(idx).unwrap_or(0),
        ),
        "pv" => Cond::HasValue(tag()?),
        "gt" => Cond::Greater(tag()?, a.get(2)?.as_f64()?),
        "and" => Cond::And(a[1..].iter().map(parse_cond).collect::<Option<Vec<_>>>()?),
        "or" => Cond::Or(a[1..].iter().map(parse_cond).collect::<Option<Vec<_>>>()?),
        _ => return None,
    })
}

fn usage(v: &Value) -> Usage {
    match v.as_str() {
        Some("M") => Usage::Mandatory,
        Some("C") => Usage::Conditional,
        _ => Usage::UserOption,
    }
}

fn named_lists(v: &Value) -> HashMap<String, Module> {
    let mut out = HashMap::new();
    if let Some(o) = v.as_object() {
        for (id, v) in o {
            out.insert(
                id.clone(),
                Module {
                    name: s(&v[0]),
                    list: idx(&v[1]).unwrap_or(0),
                },
            );
        }
    }
    out
}

fn load() -> Tables {
    let iods_v: Value = serde_json::from_str(IODS_JSON).expect("embedded iods.json is valid JSON");
    let mods_v: Value =
        serde_json::from_str(MODULES_JSON).expect("embedded modules.json is valid JSON");
    let dict_v: Value =
        serde_json::from_str(DICTIONARY_JSON).expect("embedded dictionary.json is valid JSON");

    let mut sops = HashMap::new();
    if let Some(o) = iods_v["sops"].as_object() {
        for (uid, v) in o {
            sops.insert(uid.clone(), (s(&v[0]), s(&v[1])));
        }
    }
    let mut iods = HashMap::new();
    if let Some(o) = iods_v["iods"].as_object() {
        for (id, v) in o {
            let modules = v[1]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| IodModule {
                            module_id: s(&m[0]),
                            usage: usage(&m[1]),
                            condition: s(&m[2]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let fg_macros = v[2]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| FgMacro {
                            macro_id: s(&m[0]),
                            usage: usage(&m[1]),
                            condition: s(&m[2]),
                            cond: parse_cond(&m[3]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            iods.insert(
                id.clone(),
                Iod {
                    name: s(&v[0]),
                    modules,
                    fg_macros,
                },
            );
        }
    }
    let modules = named_lists(&mods_v["mods"]);
    let macros = named_lists(&mods_v["macros"]);
    let lists = mods_v["lists"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    l.as_array()
                        .map(|x| x.iter().filter_map(idx).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let nodes = mods_v["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    let (tag, mask) = n[0].as_str().and_then(parse_tag_pattern).unwrap_or((0, 0));
                    Node {
                        tag,
                        mask,
                        typ: match n[1].as_str() {
                            Some("1") => AttrType::T1,
                            Some("1C") => AttrType::T1C,
                            Some("2") => AttrType::T2,
                            Some("2C") => AttrType::T2C,
                            _ => AttrType::T3,
                        },
                        cond: idx(&n[2]),
                        enums: idx(&n[3]),
                        children: idx(&n[4]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let conds = mods_v["conds"]
        .as_array()
        .map(|a| a.iter().map(|c| (s(&c[0]), parse_cond(&c[1]))).collect())
        .unwrap_or_default();
    let enums = mods_v["enums"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    e.as_array()
                        .map(|x| x.iter().map(s).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut dict = HashMap::new();
    let mut dict_masked = Vec::new();
    if let Some(o) = dict_v.as_object() {
        for (t, v) in o {
            let Some((tag, mask)) = parse_tag_pattern(t) else {
                continue;
            };
            let e = DictEntry {
                keyword: s(&v[0]),
                name: s(&v[1]),
                vr: s(&v[2]),
                vm: s(&v[3]),
                retired: v[4].as_i64() == Some(1),
            };
            if mask == 0xFFFF_FFFF {
                dict.insert(tag, e);
            } else {
                dict_masked.push((tag, mask, e));
            }
        }
    }
    Tables {
        edition: s(&iods_v["edition"]),
        sops,
        iods,
        modules,
        macros,
        lists,
        nodes,
        conds,
        enums,
        dict,
        dict_masked,
    }
}

/// The tables, parsed once.
pub fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(load)
}

impl Tables {
    /// PS3.6 dictionary entry of a public tag (exact, then repeating-group patterns).
    pub fn dict(&self, tag: u32) -> Option<&DictEntry> {
        self.dict.get(&tag).or_else(|| {
            self.dict_masked
                .iter()
                .find(|(t, m, _)| tag & m == *t)
                .map(|(_, _, e)| e)
        })
    }
}
