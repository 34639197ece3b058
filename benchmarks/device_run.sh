#!/usr/bin/env bash
# One run on a GPU machine without network: installs the carried wheels, runs the `gpu` tests,
# measures indexing (nvJPEG and Pillow; decode-only, encode-only, end to end) and search (torch
# exact, FAISS CPU, FAISS GPU when staged), and writes every log and JSON file under $OUT.
#
# Every step has its own time limit and the whole run has one (TOTAL_S, 470 s by default), so a
# slow step cannot eat the others' time; a step that fails or times out is recorded and the run
# goes on. Sizes come from the environment, so the same script rehearses on a CPU:
#
#   OUT=/tmp/out DEVICE=cpu PY=.venv/bin/python WHEELS=/tmp/whl311 N_IMAGES=64 \
#     SEARCH_SMALL=5000 SEARCH_LARGE=20000 SEARCH_DIM=64 INDEX_BATCH=16 benchmarks/device_run.sh
#
# On the GPU machine (Python 3.12, wheels from `make device-wheels` carried as .whl/):
#   bash benchmarks/device_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

: "${OUT:?set OUT to the folder that receives the results}"
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
DATA=${DATA:-/tmp/vsearch-device-jpegs}
CORES=$(nproc)
N_IMAGES=${N_IMAGES:-20000}
INDEX_BATCH=${INDEX_BATCH:-256}
INDEX_WORKERS=${INDEX_WORKERS:-$CORES}
DECODE_N=${DECODE_N:-1000}             # jpeg_decode.py: one process, bytes in memory
SEARCH_SMALL=${SEARCH_SMALL:-100000}   # flat and IVF
SEARCH_LARGE=${SEARCH_LARGE:-1000000}  # flat only: an IVF k-means at 1M on CPU does not fit the budget
SEARCH_DIM=${SEARCH_DIM:-512}
SEARCH_QUERIES=${SEARCH_QUERIES:-200}
GPU_QUERIES=${GPU_QUERIES:-4096}
TOTAL_S=${TOTAL_S:-470}
# per-step limits (seconds); each is also cut to what is left of TOTAL_S
T_INSTALL=${T_INSTALL:-45} T_PYTEST=${T_PYTEST:-75} T_SEARCH_SMALL=${T_SEARCH_SMALL:-60}
T_SEARCH_LARGE=${T_SEARCH_LARGE:-90} T_JPEGS=${T_JPEGS:-90} T_INDEX=${T_INDEX:-150} T_DECODE=${T_DECODE:-45}

mkdir -p "$OUT"
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME LIMIT COMMAND...: runs COMMAND with its output in $OUT/NAME.log, within LIMIT seconds
# and what is left of TOTAL_S, and records its exit status and duration.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((TOTAL_S - ($(date +%s) - START)))
  if [ "$left" -lt 5 ]; then
    note "$name: skipped (run time used up)"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0 rc
  t0=$(date +%s)
  timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  local status="ok"
  [ $rc -ne 0 ] && status="FAILED (exit $rc)"
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="TIMED OUT after ${limit}s"
  note "$name: $status in $(($(date +%s) - t0))s (limit ${limit}s) -> $name.log"
  tail -n 25 "$OUT/$name.log" | sed 's/^/    /' >> "$SUMMARY"
  return 0
}

note "vsearch device run $(date -u +%FT%TZ): DEVICE=$DEVICE N_IMAGES=$N_IMAGES search $SEARCH_SMALL,$SEARCH_LARGE x $SEARCH_DIM"
{
  nvidia-smi 2>&1 || echo "no nvidia-smi"
  "$PY" -c 'import sys, torch, torchvision; print(sys.version); print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.cuda.is_available())' 2>&1
  git log -1 --format='commit %H %s' 2>/dev/null
} > "$OUT/env.txt"

# 1. wheels the machine lacks, into their own folder (never into the system's site-packages).
# FAISS GPU, when staged by the chunked copy (/root/stage/device_setup.sh), goes first on the path.
step install "$T_INSTALL" "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl
export PYTHONPATH="$SITE:$ROOT"
if [ -f /root/stage/device_setup.sh ]; then
  # shellcheck disable=SC1091
  source /root/stage/device_setup.sh
  export PYTHONPATH="/tmp/fsite:$SITE:$ROOT"
  note "FAISS GPU staged: PYTHONPATH=$PYTHONPATH"
fi
export VSEARCH_OFFLINE=1 HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
step imports 45 "$PY" -c 'import faiss, open_clip, sqlalchemy, vsearch, indexer.gpu_decode; from vsearch.gpu import faiss_gpu_count; print("faiss", faiss.__version__, faiss.__file__, "GPUs", faiss_gpu_count()); print("open_clip", open_clip.__version__, open_clip.__file__, "sqlalchemy", sqlalchemy.__file__)'

# 2. the tests that need a GPU (they skip without one), from the files that hold them
GPU_TESTS=$(grep -rl --include='test_*.py' 'mark.gpu' tests | sort)
# shellcheck disable=SC2086
step pytest_gpu "$T_PYTEST" "$PY" -m pytest -m gpu -p no:cacheprovider -q -rs --junitxml="$OUT/pytest_gpu.xml" $GPU_TESTS

# 3. search: torch exact on the GPU against FAISS CPU (and FAISS GPU when staged)
step search_small "$T_SEARCH_SMALL" "$PY" benchmarks/search.py --gpu --device "$DEVICE" --sizes "$SEARCH_SMALL" \
  --dim "$SEARCH_DIM" --queries "$SEARCH_QUERIES" --gpu-queries "$GPU_QUERIES" --kinds flat,ivf --json "$OUT/search_small.json"
step search_large "$T_SEARCH_LARGE" "$PY" benchmarks/search.py --gpu --device "$DEVICE" --sizes "$SEARCH_LARGE" \
  --dim "$SEARCH_DIM" --queries "$SEARCH_QUERIES" --gpu-queries "$GPU_QUERIES" --kinds flat --json "$OUT/search_large.json"

# 4. photos on local disk, made by every core
JPEG_DIR="$DATA/set-$N_IMAGES"
step make_jpegs "$T_JPEGS" "$PY" -c "from benchmarks.common import synthetic_jpegs_parallel as f; print(f('$JPEG_DIR', $N_IMAGES), 'files')"
du -sh "$JPEG_DIR" >> "$SUMMARY" 2>&1

# 5. indexing: decode-only, encode-only, end to end; nvJPEG (torchvision) and Pillow
step index_throughput "$T_INDEX" "$PY" benchmarks/index_throughput.py --device "$DEVICE" --n "$N_IMAGES" \
  --batch-size "$INDEX_BATCH" --workers "$INDEX_WORKERS" --decoders torchvision,pillow --data "$DATA" \
  --json "$OUT/index_throughput.json"

# 6. JPEG decode + preprocess in one process (per-core rates): Pillow, Pillow draft, decode_jpeg on the device
step jpeg_decode "$T_DECODE" "$PY" benchmarks/jpeg_decode.py --n "$DECODE_N" --device "$DEVICE" --batch-size "$INDEX_BATCH" \
  --folder "$JPEG_DIR" --json "$OUT/jpeg_decode.json"

note "total $(($(date +%s) - START))s (limit ${TOTAL_S}s)"
exit 0
