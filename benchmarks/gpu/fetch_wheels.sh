#!/usr/bin/env bash
# Download, on a machine with PyPI access, the Python 3.12 x86-64 wheels that lipbench needs
# and the GPU machine ("nvidia-h200", /work/.library/device/KINDS.md) lacks, into DEST
# (default: .whl in the repository root). benchmarks/gpu/run.sh installs them there offline.
#
# Needed and missing there: clean-fid (its Requires-Dist numpy, pillow, requests, scipy,
# torch, torchvision, tqdm are all there) and jsonschema with jsonschema-specifications,
# referencing and rpds-py (compiled: the manylinux cp312 wheel); attrs and typing-extensions
# are there. The versions are the ones lipbench is tested with here; one version of each.
#
#   bash benchmarks/gpu/fetch_wheels.sh [DEST]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest="${1:-$root/.whl}"
wheels=(clean-fid==0.1.35 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
        referencing==0.37.0 rpds-py==2026.9.1)
mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$dest" "${wheels[@]}"
# What each wheel needs, to check by eye against the GPU machine's package list (KINDS.md).
for w in "$dest"/*.whl; do
    needs=$(python3 - "$w" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    reqs = [l.split(":", 1)[1].strip() for l in z.read(meta).decode().splitlines()
            if l.startswith("Requires-Dist:") and "extra ==" not in l]
print(", ".join(reqs) or "-")
PY
)
    echo "$(basename "$w"): needs $needs"
done
du -ch "$dest"/*.whl | tail -1
