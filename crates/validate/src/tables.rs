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
    Mandatory,
    Conditional,
    UserOption,
}

#[derive(Debug)]
pub struct IodModule {
    pub module_id: String,
    pub usage: Usage,
    pub condition: String,
}

/// A functional group macro of an enhanced multi-frame IOD (PS3.3 "... Functional Group Macros"
/// table of the IOD): its usage and, for "C", the condition (parsed when it is a common form).
#[derive(Debug)]
pub struct FgMacro {
    pub macro_id: String,
    pub usage: Usage,
    pub condition: String,
    pub cond: Option<Cond>,
}

#[derive(Debug)]
pub struct Iod {
    pub name: String,
    pub modules: Vec<IodModule>,
    /// empty unless the IOD uses the Multi-frame Functional Groups module
    pub fg_macros: Vec<FgMacro>,
}

#[derive(Debug)]
pub struct Module {
    pub name: String,
    pub list: usize,
}

/// Attribute type within a module (PS3.5 7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrType {
    T1,
    T1C,
    T2,
    T2C,
    T3,
}

impl AttrType {
    pub fn label(self) -> &'static str {
        match self {
            AttrType::T1 => "1",
            AttrType::T1C => "1C",
            AttrType::T2 => "2",
            AttrType::T2C => "2C",
            AttrType::T3 => "3",
        }
    }
    pub fn must_have_value(self) -> bool {
        matches!(self, AttrType::T1 | AttrType::T1C)
    }
}

/// A parsed 1C/2C condition.
#[derive(Clone, Debug)]
pub enum Cond {
    Present(u32),
    NotPresent(u32),
    /// tag, accepted values, 1-based value index (0 = any value)
    Equals(u32, Vec<String>, usize),
    /// present with a value (the indexed one, or the first) that is none of the values
    NotEquals(u32, Vec<String>, usize),
    /// present and not empty
    HasValue(u32),
    Greater(u32, f64),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

#[derive(Debug)]
pub struct Node {
    pub tag: u32,
    /// bits that must match (`0xFFFF_FFFF` unless the table uses a repeating group such as 60xx)
    pub mask: u32,
    pub typ: AttrType,
    pub cond: Option<usize>,
    pub enums: Option<usize>,
    pub children: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct DictEntry {
    pub keyword: String,
    pub name: String,
    pub vr: String,
    pub vm: String,
    pub retired: bool,
}

#[derive(Debug)]
pub struct Tables {
    pub edition: String,
    pub sops: HashMap<String, (String, String)>,
    pub iods: HashMap<String, Iod>,
    pub modules: HashMap<String, Module>,
    /// functional group macros (same shape as modules: a name and a top-level node list)
    pub macros: HashMap<String, Module>,
    pub lists: Vec<Vec<usize>>,
    pub nodes: Vec<Node>,
    pub conds: Vec<(String, Option<Cond>)>,
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
