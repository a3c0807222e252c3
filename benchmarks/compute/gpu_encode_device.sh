#!/usr/bin/env bash
# (e) on a lent GPU machine that reaches no package index and has no ../shared: gpu_encode.py with
# what it needs carried in one ignored folder, .device/ (about 9.5 MB: beir and the packages beir needs
# that such a machine's image lacks, as wheels for its Python; SciFact's corpus, most of the size; the
# tokenizer files).
#
#   bash benchmarks/compute/gpu_encode_device.sh prepare [PYVER]   # here, with PyPI: fills .device/ (PYVER 3.12)
#   bash benchmarks/compute/gpu_encode_device.sh run               # there: carry .device; output in $OUT
#
# The wheels are pure Python except multiprocess, which pip picks for PYVER. The image's own torch,
# transformers and sentence-transformers are used; gpu_encode.py prints their versions.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=.device
case "${1:-}" in
prepare)
  pyver="${2:-3.12}"
  shared="${HARNESS_SHARED:-../shared}"
  rm -rf "$dev" && mkdir -p "$dev/wheels" "$dev/scifact" "$dev/tokenizer"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dev/wheels" beir==2.2.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 platformdirs==4.14.9
  cp "$shared/data/beir/scifact/corpus.jsonl" "$dev/scifact/"
  for f in vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json; do
    if [ -f "$shared/models/all-MiniLM-L6-v2/$f" ]; then cp "$shared/models/all-MiniLM-L6-v2/$f" "$dev/tokenizer/"; fi
  done
  du -sh "$dev"
  echo "next, on the device: bash benchmarks/compute/gpu_encode_device.sh run   (carry: [\"$dev\"])"
  ;;
run)
  [ -d "$dev/wheels" ] || { echo "no $dev/wheels: run 'bash $0 prepare' here first and carry $dev" >&2; exit 2; }
  out="${OUT:-/tmp/gpu_encode_out}" && mkdir -p "$out"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$dev"/wheels/*.whl
  export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    python3 -c "import torch, transformers, sentence_transformers as s; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'sentence-transformers', s.__version__)"
    python3 -m benchmarks.compute.gpu_encode --scifact "$dev/scifact" --tokenizer "$dev/tokenizer" "${@:2}"
  } 2>&1 | tee "$out/gpu_encode.txt"
  ;;
*)
  echo "usage: bash benchmarks/compute/gpu_encode_device.sh prepare [PYVER] | run [gpu_encode.py options]" >&2
  exit 2
  ;;
esac
