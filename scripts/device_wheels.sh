#!/usr/bin/env bash
# Builds .whl/: the wheels a GPU machine without network lacks (it has torch, torchvision, numpy,
# Pillow, timm, pytest), for Python 3.12 on x86-64 Linux. benchmarks/device_run.sh installs them
# into /tmp/site there. Everything sent to that machine travels in one transfer of at most 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
LIMIT_MB=${LIMIT_MB:-64}
rm -rf .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl open_clip_torch ftfy wcwidth faiss-cpu pytorch-metric-learning sqlalchemy greenlet 2>&1 | { grep -v 'is ignored: it is neither' || true; }
ls -1 .whl
total_kb=$(du -sk .whl | cut -f1)
echo "total: $((total_kb / 1024)) MiB in .whl/ (one transfer carries at most ${LIMIT_MB} MiB, checkout included)"
if [ "$total_kb" -gt $((LIMIT_MB * 1024)) ]; then
  echo "too big for one transfer" >&2
  exit 1
fi
