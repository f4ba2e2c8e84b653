#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seeds made from real files installed on this machine
# (pydicom's sample DICOM files, nibabel's sample NIfTI files and volumes written by nibabel in
# every datatype radport reads, zips of both import layouts). The seeds that need more than
# Python packages (PDUs captured between DCMTK peers: capture-pdus.py) or are short text
# (manifests, tus headers) are committed under fuzz/seeds/<target>/ instead.
# libFuzzer reads both directories and adds what it finds to corpus/<target>/.
# Idempotent; a missing Python package only means fewer seeds.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus
python3 - <<'PY'
import gzip, hashlib, io, json, os, zipfile

MAX = 64 * 1024  # libFuzzer's -max_len for the DICOM and NIfTI targets (scripts/fuzz.sh)


def put(target, data, name):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"seed-{name}-{hashlib.sha1(data).hexdigest()[:12]}")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)


# DICOM: the Part-10 body (after the preamble), cut to MAX: most of what is cut is pixel data.
try:
    import pydicom
    files = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    n = 0
    for name in sorted(os.listdir(files)):
        path = os.path.join(files, name)
        if not os.path.isfile(path) or os.path.getsize(path) > 512 * 1024:
            continue
        data = open(path, "rb").read()
        if data[128:132] == b"DICM":
            body = data[128:]
        elif data[:4] == b"DICM":
            body = data
        else:
            continue
        for target in ("prescan", "ingest_attributes"):
            put(target, body[:MAX], os.path.splitext(name)[0])
        n += 1
    print(f"seed.sh: {n} DICOM files from pydicom")
except ImportError:
    print("seed.sh: pydicom is not installed: no DICOM seeds")

# NIfTI: nibabel's sample files, and small volumes in each datatype, NIfTI-1 and -2, both
# byte orders, plain and gzip.
volumes = []
try:
    import nibabel as nib
    import numpy as np
    data_dir = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
    for name in sorted(os.listdir(data_dir)):
        path = os.path.join(data_dir, name)
        if (name.endswith(".nii") or name.endswith(".nii.gz")) and os.path.getsize(path) <= MAX:
            volumes.append((name, open(path, "rb").read()))
    rng = np.random.default_rng(7)
    kinds = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
             np.float32, np.float64]
    for cls in (nib.Nifti1Image, nib.Nifti2Image):
        for dtype in kinds:
            for shape in ((5, 4, 3), (3, 2, 2, 2)):
                arr = (rng.random(shape) * 100).astype(dtype)
                affine = np.diag([0.8, 0.8, 2.5, 1.0])
                affine[:3, 3] = [-10, 20, 5]
                img = cls(arr, affine, dtype=dtype)
                img.header.set_qform(affine, code=1)
                img.header.set_sform(affine, code=2 if dtype == np.int16 else 0)
                if dtype == np.int16:
                    img.header.set_slope_inter(0.5, -10)
                raw = img.to_bytes()
                tag = f"{cls.__name__}-{np.dtype(dtype).name}-{len(shape)}d"
                volumes.append((tag, raw))
                if dtype in (np.int16, np.float32):
                    swapped = img.header.as_byteswapped(">")
                    be = cls(arr.astype(np.dtype(dtype).newbyteorder(">")), affine, swapped)
                    volumes.append((tag + "-be", be.to_bytes()))
        rgb = np.zeros((4, 3, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        volumes.append((f"{cls.__name__}-rgb24", cls(rgb, np.eye(4)).to_bytes()))
    print(f"seed.sh: {len(volumes)} NIfTI volumes from nibabel")
except ImportError:
    print("seed.sh: nibabel is not installed: no NIfTI seeds")
for name, raw in volumes:
    put("nifti", raw, name)
    if raw[:2] != b"\x1f\x8b":
        put("nifti", gzip.compress(raw, mtime=0), name + ".gz")

# Zips of both import layouts, as the NIfTI and DICOM imports read them.
def zipped(entries):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return out.getvalue()

small = next((raw for name, raw in volumes if name.startswith("Nifti1Image-uint8-3d")), b"")
small_gz = gzip.compress(small, mtime=0) if small else b""
meta = json.dumps({"global_tags": {"0008|0060": "MR"},
                   "series_tags": {"Case00.nii": {"0008|103e": "I am unique"}}}).encode()
seg_info = json.dumps({"task_body_part": "", "algorithm": "Ground truth",
                       "seg_info": [{"label_name": "prostate", "label_int": "1"}]}).encode()
dataset = json.dumps({"channel_names": {"0": "T2", "1": "ADC"},
                      "labels": {"background": 0, "prostate": 1},
                      "numTraining": 1, "file_ending": ".nii.gz", "name": "Prostate"}).encode()
layouts = {
    "basic": [("Case00.nii.gz", small_gz), ("Case00_segmentation.nii.gz", small_gz),
              ("meta_data.json", meta), ("seg_info.json", seg_info)],
    "basic-dirs": [("upload/cases/Case01.nii", small), ("upload/segs/Case01.nii", small),
                   ("upload/notes.txt", b"x"), ("__MACOSX/._Case01.nii", b"")],
    "nnunet": [("Dataset001/dataset.json", dataset),
               ("Dataset001/imagesTr/prostate_00_0000.nii.gz", small_gz),
               ("Dataset001/imagesTr/prostate_00_0001.nii.gz", small_gz),
               ("Dataset001/labelsTr/prostate_00.nii.gz", small_gz),
               ("Dataset001/imagesTs/prostate_01_0000.nii.gz", small_gz)],
    "unsafe": [("../evil.nii", small), ("/abs/x.nii.gz", small_gz), ("a\\b.nii", small)],
}
try:
    import pydicom
    files = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    layouts["dicoms"] = [(f"series/{n}", open(os.path.join(files, n), "rb").read())
                         for n in ("rtplan.dcm", "rtstruct.dcm")] + [("DICOMDIR", b"")]
except ImportError:
    pass
for name, entries in layouts.items():
    put("upload_layout", zipped(entries), name)
print(f"seed.sh: {len(layouts)} zips of import layouts")
PY
