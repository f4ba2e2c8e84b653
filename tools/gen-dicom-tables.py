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
  2. reads sops.json, ciods.json, ciod_to_modules.json, modules.json, module_to_attributes.json and
     attributes.json;
  3. writes compact tables into ``crates/validate/data/`` (or ``--out``):

     iods.json        {"edition", "source",
                       "sops": {sop_class_uid: [sop_name, ciod_id]},
                       "iods": {ciod_id: [ciod_name, [[module_id, usage M/C/U, condition text], ...]]}}
     modules.json     {"mods":  {module_id: [module_name, node_list_index]},
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
          "module_to_attributes.json", "attributes.json"]


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
    m = re.match(r"^Value (\d+) (.*)$", after)
    if m:
        vidx = int(m.group(1))
        after = m.group(2)
    after = re.sub(r"\s*[.;,]?\s*(?:may|May) be present otherwise\.?$", "", after).strip().rstrip(".,;").strip()
    if after in ("is present", "is present in this Item", "is present in the same Item"):
        return ["p", tag]
    if after in ("is not present", "is absent", "is not present in this Item"):
        return ["np", tag]
    m = re.match(r"^(?:has a value |has a Value |value is |is |has value |has the value )?greater than (-?\d+(?:\.\d+)?)$", after)
    if m:
        return ["gt", tag, float(m.group(1))]
    m = re.match(r"^(?:is present and )?(?:has a value of|has the value|has a value|has value|is equal to|equals|is|=|value is|the value is)\s+(.+)$", after)
    if m:
        v = parse_value(m.group(1))
        if v is None:
            return None
        return ["eq", tag, [v], vidx if not anyvalue else 0]
    return None


def parse_condition(sentence):
    if sentence is None:
        return None
    s = COND_START.sub("", sentence, count=1).strip()
    s = re.sub(r"\s*[;,]?\s*(?:may|May) be present otherwise\.?$", "", s).strip()
    s = s.rstrip(".").strip()
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
    pieces, ops = parts[0::2], parts[1::2]
    clauses, clause_ops = [], []
    for i, p in enumerate(pieces):
        op = ops[i - 1] if i > 0 else None
        if TAG_RE.search(p):
            c = parse_clause(p)
            if c is None:
                return None
            clauses.append(c)
            if op:
                clause_ops.append(op)
            continue
        # no tag: a continuation value ("is X or Y") or "the value is X" after "is present and"
        if not clauses:
            return None
        last = clauses[-1]
        m = re.match(r"^(?:the )?value is (.+)$", p)
        if m and op == "and" and last[0] == "p":
            v = parse_value(m.group(1))
            if v is None:
                return None
            clauses[-1] = ["eq", last[1], [v], 0]
            continue
        v = parse_value(p)
        if v is not None and op == "or" and last[0] == "eq":
            last[2].append(v)
            continue
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
    iods = {c["id"]: [c["name"], []] for c in ciods}
    for r in src["ciod_to_modules.json"]:
        if r["ciodId"] in iods:
            cond = text_of(r.get("conditionalStatement") or "")
            iods[r["ciodId"]][1].append([r["moduleId"], r["usage"][:1], cond])

    mod_names = {m["id"]: m["name"] for m in src["modules.json"]}

    # attribute rows -> trees
    rows_by_module = {}
    for r in src["module_to_attributes.json"]:
        rows_by_module.setdefault(r["moduleId"], []).append(r)

    nodes, lists, conds, enums = Interner(), Interner(), Interner(), Interner()
    stats = {"cond_total": 0, "cond_parsed": 0, "enum_lists": 0}

    def make_node(row, children, depth):
        typ = row["type"] if row["type"] in ("1", "1C", "2", "2C", "3") else "3"
        tag = norm_tag(row["tag"])
        desc = row.get("description") or ""
        cond_i = -1
        if typ in ("1C", "2C"):
            sent = condition_sentence(text_of(desc))
            parsed = parse_condition(sent)
            stats["cond_total"] += 1
            if parsed is not None:
                stats["cond_parsed"] += 1
            cond_i = conds.add([sent or "", parsed])
        en = parse_enums(desc)
        enum_i = enums.add(en) if en else -1
        if en:
            stats["enum_lists"] += 1
        child_i = lists.add(children) if children else -1
        if depth > 0 and typ == "3" and enum_i < 0 and child_i < 0:
            return None
        return nodes.add([tag, typ, cond_i, enum_i, child_i])

    mods = {}
    for mid, rows in rows_by_module.items():
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
                n = make_node(r, ch, depth)
                if n is not None:
                    out.append(n)
            return out

        top = build_list(mid, 0)
        mods[mid] = [mod_names.get(mid, mid), lists.add(top)]

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
        "modules.json": dump("modules.json", {"edition": EDITION, "mods": mods, "lists": lists.items,
                                              "nodes": nodes.items, "conds": conds.items,
                                              "enums": enums.items}),
        "dictionary.json": dump("dictionary.json", dictionary),
    }
    for k, v in sizes.items():
        print(f"{k}: {v} bytes")
    print(f"total: {sum(sizes.values())} bytes; {len(sops)} SOP classes, {len(iods)} IODs, {len(mods)} modules, "
          f"{len(nodes.items)} unique nodes, {len(conds.items)} unique conditions; "
          f"conditions parsed {stats['cond_parsed']}/{stats['cond_total']} attribute rows; "
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
