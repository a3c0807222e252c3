#!/usr/bin/env bash
# The GPU benchmarks on a lent machine that reaches no package index and has no ../shared, with what they
# need carried in one ignored folder, .device/ (about 31 MB): wheels of what the machine's image lacks
# (faiss-cpu for `harness run`'s CPU search, tabulate and platformdirs for the harness; beir 2.2.0 and
# the packages beir needs, for the comparison rows), SciFact (corpus, queries, test qrels) and
# all-MiniLM-L6-v2's tokenizer files (BERT's uncased vocabulary). The image's own torch, transformers,
# sentence-transformers, numpy, pandas and scipy are used; the JSON records their versions.
#
#   bash benchmarks/gpu/device.sh prepare [PYVER]        # here, with PyPI: fills .device/ (PYVER 3.12)
#   bash benchmarks/gpu/device.sh run [PARTS]            # there, carry [".device"]: the device check's parts
#                                                        # (default all, in order: 1_train,2_run,3_encode,
#                                                        # 4_rerank_sparse,5_oom); each part's JSON in $OUT as
#                                                        # soon as it ends, the log in $OUT/device_check.txt
#   bash benchmarks/gpu/device.sh run 1_train            # one part a command, where device time is short
#   bash benchmarks/gpu/device.sh run benchmarks.compute.gpu_encode [ARGS]   # another module
#
# faiss-cpu is an abi3 wheel (any CPython >= 3.10); multiprocess is the one wheel pip picks for PYVER.
set -euo pipefail
cd "$(dirname "$0")/../.."
dev=.device
case "${1:-}" in
prepare)
  pyver="${2:-3.12}"
  shared="${HARNESS_SHARED:-../shared}"
  rm -rf "$dev" && mkdir -p "$dev/wheels" "$dev/scifact/qrels" "$dev/tokenizer"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dev/wheels" beir==2.2.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 platformdirs==4.14.9 \
    faiss-cpu==1.15.1 tabulate==0.10.0
  cp "$shared/data/beir/scifact/corpus.jsonl" "$shared/data/beir/scifact/queries.jsonl" "$dev/scifact/"
  cp "$shared/data/beir/scifact/qrels/test.tsv" "$dev/scifact/qrels/"
  for f in vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json; do
    if [ -f "$shared/models/all-MiniLM-L6-v2/$f" ]; then cp "$shared/models/all-MiniLM-L6-v2/$f" "$dev/tokenizer/"; fi
  done
  du -sh "$dev"
  echo "next, on the device: bash benchmarks/gpu/device.sh run   (carry: [\"$dev\"])"
  ;;
run)
  [ -d "$dev/wheels" ] || { echo "no $dev/wheels: run 'bash $0 prepare' here first and carry $dev" >&2; exit 2; }
  module=benchmarks.gpu.device_check parts="${2:-}"
  case "$parts" in benchmarks.*) module="$parts" parts="" ;; esac
  out="${OUT:-/tmp/device_out}" && mkdir -p "$out"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$dev"/wheels/*.whl
  export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  name="${module##*.}"
  extra=()
  if [ "$module" = benchmarks.gpu.device_check ]; then
    extra=(--out "$out" --json "$out/$name.json")
    if [ -n "$parts" ]; then extra+=(--parts "$parts"); fi
  fi
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    python3 -c "import torch, transformers, sentence_transformers as s; print('torch', torch.__version__, \
'transformers', transformers.__version__, 'sentence-transformers', s.__version__)"
    python3 -m "$module" --scifact "$dev/scifact" --tokenizer "$dev/tokenizer" "${extra[@]}" "${@:3}"
  } 2>&1 | tee "$out/$name.txt"
  cp benchmarks/*/results/"$name"-*.json "$out/" 2>/dev/null || true
  ;;
*)
  echo "usage: bash benchmarks/gpu/device.sh prepare [PYVER] | run [MODULE [ARGS]]" >&2
  exit 2
  ;;
esac
