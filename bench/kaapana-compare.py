"""Helper of bench/kaapana-compare.sh: test data, and Kaapana's way of converting it (SimpleITK + dcmqi).

usage:
  kaapana-compare.py gen DIR NX NY NZ     image.nii (float32) + labels.nii (uint8, labels 1..5) in DIR: the same
                                          volume, segmentation and affine as crates/convert/examples/bench.rs
  kaapana-compare.py sitk DIR             image.nii → DIR/sitk/*.dcm the way Kaapana's itk2dcm does it: SimpleITK
                                          reads the NIfTI, casts to int16, writes slice by slice with the series
                                          tags (SimpleITK's "DicomSeriesFromArray" example); prints seconds
  kaapana-compare.py dcmqi DIR            labels.nii + DIR/sitk → DIR/dcmqi-seg.dcm with dcmqi's itkimage2segimage
                                          (one multi-label input, five segments); prints seconds
Each timed step prints one line "seconds=<s> <details>".
"""
import json
import os
import shutil
import subprocess
import sys
import time


def gen(d, nx, ny, nz):
    import nibabel as nib
    import numpy as np

    x = (np.arange(nx, dtype=np.float64) / nx)[:, None, None]
    y = (np.arange(ny, dtype=np.float64) / ny)[None, :, None]
    z = (np.arange(nz, dtype=np.float64) / nz)[None, None, :]
    img = (np.sin(x * 12.0) * 800.0 + np.cos(y * 7.0) * 300.0 + z * 50.0 - 200.25).astype(np.float32)
    lab = np.zeros((nx, ny, nz), dtype=np.uint8)
    centres = [(0.3, 0.3, 0.3), (0.7, 0.3, 0.5), (0.5, 0.7, 0.5), (0.3, 0.7, 0.7), (0.7, 0.7, 0.2)]
    for s, (cx, cy, cz) in enumerate(centres):
        lab[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < 0.015] = s + 1
    aff = np.array([[-0.7, 0, 0, 180.0], [0, 0.7, 0, -150.0], [0, 0, 1.25, -200.0], [0, 0, 0, 1]])
    for name, data in (("image.nii", img), ("labels.nii", lab)):
        im = nib.Nifti1Image(data, aff)
        im.set_sform(aff, code=2)
        im.set_qform(aff, code=1)
        nib.save(im, os.path.join(d, name))
    print(f"generated {nx}x{ny}x{nz}: labels {[int((lab == s + 1).sum()) for s in range(5)]} voxels")


def sitk_series(d):
    import SimpleITK as sitk

    out = os.path.join(d, "sitk")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    t0 = time.perf_counter()
    img = sitk.ReadImage(os.path.join(d, "image.nii"))
    img = sitk.Cast(img, sitk.sitkInt16)  # what Kaapana's itk2dcm does with every input
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    now_d, now_t = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    direction = img.GetDirection()
    series_tags = [
        ("0008|0031", now_t),
        ("0008|0021", now_d),
        ("0008|0008", "DERIVED\\SECONDARY"),
        ("0020|000d", "1.2.826.0.1.3680043.2.1125.1" + now_d + now_t),
        ("0020|000e", "1.2.826.0.1.3680043.2.1125.2" + now_d + now_t),
        ("0020|0037", "\\".join(map(str, (direction[0], direction[3], direction[6],
                                          direction[1], direction[4], direction[7])))),
        ("0008|103e", "kaapana-compare"),
        ("0008|0060", "CT"),
        ("0010|0020", "BENCH"),
    ]
    for i in range(img.GetDepth()):
        sl = img[:, :, i]
        for k, v in series_tags:
            sl.SetMetaData(k, v)
        sl.SetMetaData("0008|0012", time.strftime("%Y%m%d"))
        sl.SetMetaData("0008|0013", time.strftime("%H%M%S"))
        sl.SetMetaData("0020|0032", "\\".join(map(str, img.TransformIndexToPhysicalPoint((0, 0, i)))))
        sl.SetMetaData("0020|0013", str(i + 1))
        writer.SetFileName(os.path.join(out, f"IM{i:04d}.dcm"))
        writer.Execute(sl)
    print(f"seconds={time.perf_counter() - t0:.3f} files={img.GetDepth()} (int16 cast: fractions truncated)")


def dcmqi_seg(d):
    exe = shutil.which("itkimage2segimage")
    if exe is None:
        print("seconds=NA itkimage2segimage not found (pip install dcmqi)")
        return
    scts = [("10200004", "Liver"), ("78961009", "Spleen"), ("64033007", "Kidney"),
            ("15776009", "Pancreas"), ("52988006", "Lesion")]
    segs = []
    for n, (name, (code, meaning)) in enumerate(zip(["liver", "spleen", "kidney", "pancreas", "lesion"], scts)):
        segs.append({
            "labelID": n + 1,
            "SegmentDescription": name,
            "SegmentLabel": name,
            "SegmentAlgorithmType": "AUTOMATIC",
            "SegmentAlgorithmName": "bench",
            "SegmentedPropertyCategoryCodeSequence": {
                "CodeValue": "123037004", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Anatomical Structure"},
            "SegmentedPropertyTypeCodeSequence": {
                "CodeValue": code, "CodingSchemeDesignator": "SCT", "CodeMeaning": meaning},
            "recommendedDisplayRGBValue": [40 * n, 255 - 40 * n, 128],
        })
    meta = {
        "ContentCreatorName": "bench",
        "ClinicalTrialSeriesID": "1",
        "ClinicalTrialTimePointID": "1",
        "SeriesDescription": "Segmentation",
        "SeriesNumber": "300",
        "InstanceNumber": "1",
        "BodyPartExamined": "",
        "segmentAttributes": [segs],
        "ContentLabel": "SEGMENTATION",
        "ContentDescription": "bench",
    }
    meta_path = os.path.join(d, "dcmqi-meta.json")
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    out = os.path.join(d, "dcmqi-seg.dcm")
    if os.path.exists(out):
        os.remove(out)
    t0 = time.perf_counter()
    p = subprocess.run([exe, "--inputImageList", os.path.join(d, "labels.nii"),
                        "--inputDICOMDirectory", os.path.join(d, "sitk"),
                        "--outputDICOM", out, "--inputMetadata", meta_path],
                       capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0 or not os.path.exists(out):
        tail = (p.stdout + p.stderr).strip().splitlines()[-3:]
        print(f"seconds=NA itkimage2segimage failed ({p.returncode}): {' | '.join(tail)}")
        return
    print(f"seconds={dt:.3f} seg_bytes={os.path.getsize(out)}")


if __name__ == "__main__":
    cmd, d = sys.argv[1], sys.argv[2]
    if cmd == "gen":
        gen(d, *map(int, sys.argv[3:6]))
    elif cmd == "sitk":
        sitk_series(d)
    elif cmd == "dcmqi":
        dcmqi_seg(d)
    else:
        sys.exit(__doc__)
