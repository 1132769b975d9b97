#!/usr/bin/env bash
# Regenerates every fixture in tests/data from ../shared/data with the reference
# tools of ../shared/refs (see its README for the virtualenv).
# Usage (from the repository root):
#   REFS=../shared/refs DATA=../shared/data VENV=../.venv-refs tests/data/make_fixtures.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
REFS=$(cd "${REFS:-$ROOT/../shared/refs}" && pwd)
DATA=$(cd "${DATA:-$ROOT/../shared/data}" && pwd)
VENV=$(cd "${VENV:-$ROOT/../.venv-refs}" && pwd)
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
OUT="$ROOT/tests/data"
cd "$(mktemp -d)"   # python-gdcm breaks when the cwd holds a folder named dl

# 1. Real files, copied byte for byte (provenance: ../shared/data/SOURCES.md, PROVENANCE.md here)
mkdir -p "$OUT/dicom" "$OUT/nifti"
cp -r "$DATA/dicom/series" "$DATA/dicom/compressed" "$DATA/dicom/enhanced" "$DATA/dicom/single" "$OUT/dicom/"
cp "$DATA/nifti/nibabel_anatomical.nii" "$DATA/nifti/dipy_aniso_vox.nii.gz" "$OUT/nifti/"
# the whole head (skull and face) and the T1 atlas for skull stripping by registration
cp "$DATA/nifti/pydeface_mean_reg2mean.nii.gz" "$DATA/nifti/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz" \
   "$DATA/nifti/derived_mni152_brainmask.nii.gz" "$OUT/nifti/"
chmod -R u+w "$OUT/dicom" "$OUT/nifti"

# 2. Synthetic series written by write_dicom_series.py from the real nibabel T1 crop
mkdir -p "$OUT/synth"
"$PY" - "$DATA/nifti/nibabel_anatomical.nii" "$OUT/synth/reversed_src.nii.gz" <<'PYEOF'
import sys, nibabel as nib, numpy as np
img = nib.load(sys.argv[1])
d = np.asarray(img.dataobj)[::-1, :, ::-1]         # flip i and k
a = img.affine.copy()
n = np.array(d.shape) - 1
a[:3, 3] = a[:3, 3] + a[:3, 0] * n[0] + a[:3, 2] * n[2]
a[:3, 0] *= -1; a[:3, 2] *= -1                       # same world, reversed axes
nib.save(nib.Nifti1Image(d.astype(np.int16), a), sys.argv[2])
PYEOF
SRC="$DATA/nifti/nibabel_anatomical.nii"
"$PY" "$REFS/write_dicom_series.py" "$SRC" "$OUT/synth/oblique_shuffled" --oblique 17 --shuffle --modality MR > /dev/null
"$PY" "$REFS/write_dicom_series.py" "$SRC" "$OUT/synth/rle" --ts rle --oblique 5 --modality CT > /dev/null
"$PY" "$REFS/write_dicom_series.py" "$SRC" "$OUT/synth/j2k" --ts j2k --shuffle --modality MR > /dev/null
"$PY" "$REFS/write_dicom_series.py" "$OUT/synth/reversed_src.nii.gz" "$OUT/synth/reversed" --modality CT > /dev/null
rm "$OUT/synth/reversed_src.nii.gz"

# 3. dcm2niix on every series / multi-frame file it converts
mkdir -p "$OUT/ref/dcm2niix"
gunzip -c "$OUT/dicom/enhanced/philips_mprage.dcm.gz" > philips_mprage.dcm
conv() {  # name input
  mkdir -p in_$1 out_$1
  if [ -d "$2" ]; then cp -r "$2"/. in_$1/; else cp "$2" in_$1/; fi
  if dcm2niix -z y -f "$1" -o out_$1 in_$1 > out_$1.log 2>&1 && [ -f out_$1/$1.nii.gz ]; then
    cp out_$1/$1.nii.gz "$OUT/ref/dcm2niix/$1.nii.gz"; echo "dcm2niix $1: ok"
  else echo "dcm2niix $1: no output"; fi
}
conv ct5n "$OUT/dicom/series/ct5n"
conv oblique_shuffled "$OUT/synth/oblique_shuffled"
conv rle "$OUT/synth/rle"
conv j2k "$OUT/synth/j2k"
conv reversed "$OUT/synth/reversed"
conv ct_small "$OUT/dicom/single/CT_small.dcm"
conv philips_mprage philips_mprage.dcm
conv emri_small "$OUT/dicom/enhanced/emri_small.dcm"
for f in MR_small MR_small_RLE MR_small_bigendian MR_small_implicit MR_small_jp2klossless \
         MR_small_jpeg_ls_lossless 693_UNCR 693_J2KR 693_J2KI bad_sequence explicit_VR-UN; do
  conv "$f" "$OUT/dicom/compressed/$f.dcm"
done

# 4a. NIfTI files in every datatype aneu reads (nibabel writes them): u8, i16
#     with scl_slope/scl_inter, u16, i32, f64, and a qform-only oblique file
"$PY" - "$OUT" <<'PYEOF'
import sys, numpy as np, nibabel as nib
out = sys.argv[1] + "/nifti/"
rng = np.random.default_rng(5)
src = np.asarray(nib.load(out + "nibabel_anatomical.nii").dataobj)[:12, :10, :8]
aff = np.array([[-2.0, 0, 0, 30], [0, 2.0, 0, -20], [0, 0, 2.0, 10], [0, 0, 0, 1]])
for name, dt in [("u8", np.uint8), ("u16", np.uint16), ("i32", np.int32), ("f64", np.float64)]:
    d = (src % 250).astype(dt) if dt == np.uint8 else src.astype(dt) * (1.5 if dt == np.float64 else 1)
    nib.save(nib.Nifti1Image(d, aff), out + f"dtype_{name}.nii.gz")
img = nib.Nifti1Image(src.astype(np.int16), aff)
img.header.set_slope_inter(0.5, -10.0)
nib.save(img, out + "dtype_i16_scaled.nii.gz")
c, s = np.cos(0.3), np.sin(0.3)
obl = np.array([[c, -s, 0, 5], [s, c, 0, -7], [0, 0, -1.5, 12], [0, 0, 0, 1]]) @ np.diag([1.2, 0.9, 1, 1])
img = nib.Nifti1Image(src.astype(np.float32), obl)
img.set_sform(None, code=0)
img.set_qform(obl, code=1)
nib.save(img, out + "qform_only_oblique.nii.gz")
PYEOF

# 4. nibabel's view of every NIfTI fixture, and the localizer mapping of ref_lps2ras.py
"$PY" - "$OUT" <<'PYEOF' > "$OUT/ref/nibabel.json"
import sys, json, glob, os, nibabel as nib, numpy as np
out = sys.argv[1]; res = {}
for f in sorted(glob.glob(out + "/nifti/*") + glob.glob(out + "/ref/dcm2niix/*.nii.gz")):
    img = nib.load(f); d = np.asarray(img.get_fdata(), dtype=np.float64)
    c = nib.as_closest_canonical(img); cd = np.asarray(c.get_fdata(), dtype=np.float64)
    res[os.path.relpath(f, out)] = {
        "shape": list(d.shape[:3]), "affine": img.affine.tolist(),
        "axcodes": "".join(nib.aff2axcodes(img.affine)), "sum": float(d.sum()),
        "canonical_affine": c.affine.tolist(),
        "samples": [[int(i), int(j), int(k), float(d[i, j, k])] for i, j, k in
                    [(0, 0, 0), tuple(s - 1 for s in d.shape[:3]), tuple(s // 2 for s in d.shape[:3]),
                     tuple(s // 3 for s in d.shape[:3])]],
    }
print(json.dumps(res, indent=1))
PYEOF
"$PY" - "$OUT" "$REFS" <<'PYEOF' > "$OUT/ref/localizers.json"
# For a few pixels per series: the voxel ijk that ref_lps2ras.py's formula gives in dcm2niix's NIfTI.
import sys, json, glob, os, subprocess, re, pydicom, random
out, refs = sys.argv[1], sys.argv[2]; res = []
random.seed(0)
for name, d in [("ct5n", out + "/dicom/series/ct5n"), ("oblique_shuffled", out + "/synth/oblique_shuffled")]:
    files = sorted(glob.glob(d + "/*"))
    for f in random.sample(files, 3):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        x, y = round(random.uniform(0, ds.Columns - 1), 2), round(random.uniform(0, ds.Rows - 1), 2)
        r = subprocess.run([sys.executable, refs + "/ref_lps2ras.py", d, ds.SOPInstanceUID, str(x), str(y),
                            "--nifti", out + "/ref/dcm2niix/" + name + ".nii.gz"], capture_output=True, text=True)
        m = re.search(r"voxel ijk=\[\s*([-\d.e]+)\s+([-\d.e]+)\s+([-\d.e]+)\s*\]", r.stdout)
        ras = re.search(r"RAS \(mm\)\s*:\s*\[\s*([-\d.e]+)\s+([-\d.e]+)\s+([-\d.e]+)\s*\]", r.stdout)
        res.append({"series": name, "dir": os.path.relpath(d, out), "sop": ds.SOPInstanceUID, "x": x, "y": y,
                    "ras": [float(v) for v in ras.groups()], "ijk_dcm2niix": [float(v) for v in m.groups()]})
print(json.dumps(res, indent=1))
PYEOF
"$PY" -c "import pydicom,nibabel,sys; print('pydicom', pydicom.__version__, 'nibabel', nibabel.__version__)"
dcm2niix -v 2>&1 | head -2 || true

# 6. Transfer syntaxes no shipped file uses: deflate (pydicom) and 8-bit JPEG
#    baseline (Pillow 11.3.0 encodes, pydicom encapsulates), both from MR_small
"$PY" - "$OUT" <<'PYEOF'
import sys, io, json, numpy as np, pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit
from pydicom.encaps import encapsulate
from PIL import Image
out = sys.argv[1]
ds = pydicom.dcmread(out + "/dicom/compressed/MR_small.dcm")
ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
ds.save_as(out + "/dicom/compressed/synth_deflate.dcm", enforce_file_format=True)
ds = pydicom.dcmread(out + "/dicom/compressed/MR_small.dcm")
a = ds.pixel_array.astype(np.float64)
a8 = np.round(255 * (a - a.min()) / (a.max() - a.min())).astype(np.uint8)
buf = io.BytesIO(); Image.fromarray(a8, mode="L").save(buf, format="JPEG", quality=90)
ds.PixelData = encapsulate([buf.getvalue()])
ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
ds["PixelData"].VR = "OB"
ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
ds.LossyImageCompression = "01"
ds.save_as(out + "/dicom/compressed/synth_jpeg_baseline.dcm", enforce_file_format=True)
d = pydicom.dcmread(out + "/dicom/compressed/synth_jpeg_baseline.dcm").pixel_array
json.dump({"source": a8.astype(int).ravel().tolist(), "pydicom": d.astype(int).ravel().tolist()},
          open(out + "/ref/jpeg_baseline_values.json", "w"))
PYEOF

# 5. pydicom + pylibjpeg decodes of every compressed file (stored values, no rescale)
"$PY" - "$OUT" <<'PYEOF' > "$OUT/ref/pydicom_decodes.json"
import sys, json, glob, os, pydicom, numpy as np
out = sys.argv[1]; res = {}
for f in sorted(glob.glob(out + "/dicom/compressed/*.dcm") + glob.glob(out + "/dicom/enhanced/*.dcm")):
    ds = pydicom.dcmread(f)
    try:
        a = ds.pixel_array.astype(np.float64)
    except Exception as e:
        res[os.path.relpath(f, out)] = {"error": str(e)}; continue
    a = a.reshape((-1, ds.Rows, ds.Columns))
    res[os.path.relpath(f, out)] = {"shape": list(a.shape), "sum": float(a.sum()), "sumsq": float((a * a).sum()),
                                    "min": float(a.min()), "max": float(a.max()),
                                    "transfer_syntax": str(ds.file_meta.TransferSyntaxUID)}
print(json.dumps(res, indent=1))
PYEOF

# 7. SimpleITK resampling (ref_resample.py) of the real NIfTI volumes and an
#    oblique one, with each interpolator
mkdir -p "$OUT/ref/resample"
for interp in linear nearest bspline; do
  "$PY" "$REFS/ref_resample.py" "$OUT/nifti/nibabel_anatomical.nii" "$OUT/ref/resample/anatomical_1.5_$interp.nii.gz" --interp $interp --spacing 1.5 > /dev/null
  "$PY" "$REFS/ref_resample.py" "$OUT/nifti/dipy_aniso_vox.nii.gz" "$OUT/ref/resample/aniso_3_$interp.nii.gz" --interp $interp --spacing 3 > /dev/null
  "$PY" "$REFS/ref_resample.py" "$OUT/nifti/qform_only_oblique.nii.gz" "$OUT/ref/resample/oblique_0.7_$interp.nii.gz" --interp $interp --spacing 0.7 > /dev/null
done

# 8. N4: a downsized make_synthetic.py volume with its known log bias, and
#    SimpleITK's N4 (ref_n4.py, defaults, the given mask, shrink 2)
mkdir -p "$OUT/ref/n4" syn
"$PY" "$REFS/make_synthetic.py" syn --size 64,64,32 --spacing 3,3,3 --seed 0 > /dev/null
"$PY" - syn "$OUT/ref/n4" <<'PYEOF'
import sys, nibabel as nib
for n in ["synth", "mask", "true_logbias"]:
    nib.save(nib.load(f"{sys.argv[1]}/{n}.nii"), f"{sys.argv[2]}/{n}.nii.gz")
PYEOF
"$PY" "$REFS/ref_n4.py" "$OUT/ref/n4/synth.nii.gz" n4_corrected.nii.gz "$OUT/ref/n4/sitk_logbias_shrink2.nii.gz" \
  --mask "$OUT/ref/n4/mask.nii.gz" --shrink 2 --threads 2 > "$OUT/ref/n4/sitk_shrink2.log"
