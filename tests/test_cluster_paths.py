"""The GPU and cluster paths a CPU test can still pin down (from a review of those paths by reading):

- every model loads in float32, whatever dtype its files were saved in (transformers 5 loads the dtype of
  config.json by default: a float16 model would run in half precision under a record that says fp32);
- under torchrun the group's backend follows ``--device`` (gloo for ``--device cpu`` on a machine with GPUs),
  and ``--device cuda:N`` is refused for several ranks on a node that sees several GPUs;
- work one rank does alone, or a rank's share, that fails stops every rank at once (``distributed.together``),
  not after the long timeout;
- a composition that reranks with a dense model encodes the rescorer's corpus on every rank;
- ``harness encode`` refuses two ranks given the same part, and ``harness finetune`` runs in one process;
- the vectors' width (the manifest's ``dim``) counts a Dense head and concatenated poolings;
- the trainer's ``--precision auto`` picks bf16 only where the GPU runs it (compute capability 8.0+);
- a record's ``peak_gpu_mb`` is read from the record's own GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import distributed
from harness.errors import HarnessError
from tests.conftest import make_tiny_beir, make_tiny_bert


def _half_precision_copy(src: Path, dst: Path, dtype: torch.dtype) -> Path:
    """``src`` saved again in ``dtype``, its config.json saying so (as many hub models are saved)."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(src), dtype=torch.float32).to(dtype)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(dst)
    config = json.loads((dst / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) in {"float16", "bfloat16"}
    return dst


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_model_saved_in_half_precision_runs_in_float32(tmp_path, dtype):
    from transformers import AutoModel

    from harness.retrievers.encoder import HFEncoder
    from harness.retrievers.hub import load_checked
    from tests.test_fused_bert import CONTRIEVER

    half = _half_precision_copy(make_tiny_bert(tmp_path / "bert", hidden=32), tmp_path / "half", dtype)
    model = load_checked(AutoModel, half)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    encoder = HFEncoder(str(half), CONTRIEVER, device="cpu", forward="transformers", progress=False)
    assert {p.dtype for p in encoder.model.parameters()} == {torch.float32}
    # the same vectors as the half-precision weights widened by hand and run in float32
    widened = AutoModel.from_pretrained(str(half), dtype=dtype).float().eval()
    texts = ["the protein of the cell", "gene expression in tumor patients"]
    got = encoder.encode(texts)
    ids = encoder.tokenize(texts)
    width = max(len(x) for x in ids)
    input_ids = torch.tensor([x + [0] * (width - len(x)) for x in ids])
    mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    with torch.inference_mode():
        hidden = widened(input_ids=input_ids, attention_mask=mask).last_hidden_state
    want = ((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_a_half_precision_model_has_keys_of_its_own_and_float32_models_keep_theirs(tmp_path):
    """Vectors a half-precision model gave before loading was float32 (transformers 5 ran it in float16) must
    not be reused: its compute key, and so its store key and record fingerprint, names the widening."""
    from harness.retrievers.dense import DenseRetriever
    from harness.retrievers.hub import widened_from
    from harness.retrievers.registry import resolve_retriever
    from harness.settings import Execution

    full = make_tiny_bert(tmp_path / "bert", hidden=32)
    half = _half_precision_copy(full, tmp_path / "half", torch.float16)
    keys = {}
    for name, folder in (("full", full), ("half", half)):
        retriever = DenseRetriever(resolve_retriever(f"hf:{folder}"), execution=Execution(device="cpu"))
        keys[name] = retriever.encoders.compute_key()
    assert "widened_from" not in keys["full"] and keys["half"]["widened_from"] == "float16"
    assert widened_from(full) == {} and widened_from(tmp_path / "nowhere") == {}


def test_the_sentence_transformers_backend_runs_a_half_precision_model_in_float32(tmp_path):
    import shutil

    from harness.retrievers.st_backend import SentenceTransformersEncoder

    folder = make_tiny_bert(tmp_path / "st", hidden=16, st_files=True)
    half = tmp_path / "st-half"
    shutil.copytree(folder, half)
    _half_precision_copy(folder, half, torch.float16)  # the weights and config.json in float16, modules kept
    encoder = SentenceTransformersEncoder(half, "cpu", "")
    assert {p.dtype for p in encoder.model.parameters()} == {torch.float32}
    assert encoder.encode(["the cell"]).dtype == np.float32


def _group_start_recorded(monkeypatch) -> list[bool]:
    """world() in a (pretended) group of ranks, with the group's start recorded instead of made."""
    import torch.distributed as dist

    started: list[bool] = []

    class Started(Exception):
        pass

    def start(cuda, *args, **kwargs):
        started.append(cuda)
        raise Started

    monkeypatch.setattr(distributed, "_launched", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed, "start", start)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(distributed._STATE, "device", None)
    for device in ("cpu", "auto", "cuda", "cuda:1", "mps"):
        distributed.compute_on(device)
        with pytest.raises(Started):
            distributed.world()
    return started


def test_the_groups_backend_follows_the_device_asked_for(monkeypatch):
    # a machine with GPUs: --device cpu starts gloo (no GPU bound), auto and cuda start NCCL
    assert _group_start_recorded(monkeypatch) == [False, True, True, True, False]
    # without CUDA every device starts gloo (--device cuda is then refused by the device check, by name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert [distributed.on_cuda(d) for d in ("auto", "cuda", "cuda:1", "cpu")] == [False] * 4


def test_a_runner_says_its_device_before_any_group_starts(monkeypatch):
    from harness.runner import Runner
    from harness.settings import Execution

    monkeypatch.setitem(distributed._STATE, "device", None)
    Runner(execution=Execution(device="cpu"))
    assert distributed._STATE["device"] == "cpu"


def test_bf16_autocast_only_where_the_gpu_runs_it(monkeypatch):
    from harness.train.trainer import _autocast_dtype

    gpu = torch.device("cuda", 1)
    asked: list[torch.device] = []
    for capability, want in (((7, 0), torch.float16), ((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                             ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability",
                            lambda device, c=capability: (asked.append(device), c)[1])
        assert _autocast_dtype("auto", gpu) is want
    assert set(asked) == {gpu}  # this device's capability, not the current one's
    assert _autocast_dtype("auto", torch.device("cpu")) is None


def test_the_peak_gpu_memory_is_read_from_the_records_device(monkeypatch):
    from harness.results.efficiency import measure
    from harness.retrievers.base import Indexed

    read: list[str | None] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: (read.append(device), 3 * 2**20)[1])
    indexed = Indexed("built", 10, computed=True)
    assert measure(indexed, 5, 1.0, 0.5, "cuda:1", {})["peak_gpu_mb"] == 3.0
    assert measure(indexed, 5, 1.0, 0.5, None, {})["peak_gpu_mb"] == 3.0  # no device said: the current GPU
    assert read == ["cuda:1", None]
    assert "peak_gpu_mb" not in measure(indexed, 5, 1.0, 0.5, "cpu", {})
    assert "peak_gpu_mb" not in measure(indexed, 5, 1.0, 0.5, "mps", {})


def test_the_vectors_width_counts_a_dense_head_and_concatenated_poolings(tmp_path):
    from harness.odqa.shards import model_dim
    from harness.retrievers.dense import DenseRetriever
    from harness.retrievers.encoder import HFEncoder
    from harness.retrievers.registry import resolve_retriever
    from harness.settings import Execution

    folder = make_tiny_bert(tmp_path / "st", hidden=16, st_files=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 16, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}))
    retriever = DenseRetriever(resolve_retriever(f"hf:{folder}"), execution=Execution(device="cpu", progress=False))
    encoder = retriever.encoders.encoder
    assert isinstance(encoder, HFEncoder)
    assert model_dim(retriever) == retriever.encoders.dim == encoder.dim == 32
    assert encoder.encode(["the cell"]).shape == (1, 32)


def test_finetune_runs_in_one_process(monkeypatch, tmp_path, capsys):
    from harness.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["finetune", "--init", str(tmp_path / "none"), "--dataset", str(tmp_path), "--split", "train",
                 "--output", str(tmp_path / "ft"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "runs in one process" in err and "2 ranks" in err
    assert not (tmp_path / "ft").exists()


# --- two gloo ranks under torchrun -------------------------------------------------------------------------

TOGETHER = """
import sys
from harness import distributed
from harness.errors import HarnessError

distributed.compute_on("cpu")
rank, size = distributed.world()

def work():
    if rank == int(sys.argv[1]):
        raise HarnessError("the disk is full")
    return rank

try:
    got = distributed.together("the checkpoint of step 7 (rank 0 writes it)", work)
except HarnessError as e:
    print(f"rank {rank}: {e}", file=sys.stderr)
    sys.exit(2)
print(f"rank {rank} done {got}", file=sys.stderr)
"""


def _torchrun(args: list[str], env: dict[str, str], port: int) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("failing", [0, 1])
def test_one_ranks_failure_stops_every_rank_at_once(tmp_path, failing):
    script = tmp_path / "together.py"
    script.write_text(TOGETHER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HARNESS_DIST_TIMEOUT": "3600",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = _torchrun([str(script), str(failing)], env, 29541 + failing)
    assert out.returncode != 0
    other = 1 - failing
    assert f"rank {failing}: the disk is full" in out.stderr
    assert (f"rank {other}: rank {failing} failed at the checkpoint of step 7 (rank 0 writes it) "
            "(the disk is full); every rank stops") in out.stderr, out.stderr[-3000:]
    # and nobody waited out HARNESS_DIST_TIMEOUT: the subprocess timeout (300 s) would have failed the test


@pytest.mark.slow
def test_two_ranks_rerank_with_a_dense_rescorer_as_one_process(tmp_path):
    from harness.results.records import read_record
    from harness.runner import run
    from harness.settings import Execution

    data = make_tiny_beir(tmp_path / "data", n_docs=50, n_queries=6)
    a, b = make_tiny_bert(tmp_path / "a", seed=11), make_tiny_bert(tmp_path / "b", seed=12)
    spec = f"rerank:hf:{b}(hf:{a};top=6)"
    single = run([spec], [str(data)], ["ndcg@10", "recall@20"], tmp_path / "single",
                 execution=Execution(shard_size=10, device="cpu"), log=lambda m: None)[0]
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "dist-cache"), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "HARNESS_DIST_TIMEOUT": "120"}
    out = _torchrun(["-m", "harness", "run", "--retriever", spec, "--dataset", str(data), "--metric", "ndcg@10",
                     "--metric", "recall@20", "--shard-size", "10", "--device", "cpu", "--output-dir",
                     str(tmp_path / "dist")], env, 29545)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [read_record(p) for p in (tmp_path / "dist").rglob("*.json")]
    (record,) = [r for r in records if r.retriever == single.retriever]
    assert record.metrics == pytest.approx(single.metrics, abs=1e-9)
    manifests = list((tmp_path / "dist-cache" / "embeddings").rglob("manifest.json"))
    assert len(manifests) == 2  # the first stage's store and the rescorer's, each sealed whole
    assert [json.loads(m.read_text())["count"] for m in manifests] == [50, 50]


def test_harness_encode_refuses_more_ranks_than_parts_without_a_group(monkeypatch):
    import torch.distributed as dist

    from harness.odqa import shards

    monkeypatch.setattr(dist, "init_process_group", lambda *a, **k: pytest.fail("a group was started"))
    monkeypatch.setenv("WORLD_SIZE", "3")
    shards._refuse_shared_parts(1, 3)  # srun -n 3 ... --shard $SLURM_PROCID/3: every task its own part
    shards._refuse_shared_parts(5, 8)
    with pytest.raises(HarnessError, match=r"started as 3 ranks with --shard 0/1: at least two would encode the "
                                           r"same chunks"):
        shards._refuse_shared_parts(0, 1)
    monkeypatch.delenv("WORLD_SIZE")
    shards._refuse_shared_parts(0, 1)  # one process: one job
