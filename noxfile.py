"""Sessions: quickstart (the main job), tests (what CI runs), lint, benchmarks.

`python3.11 -m nox -s tests` installs the package into a fresh virtual environment and runs every test
tier, then the regression check against baselines/. Torch is pinned to 2.13.0: on a machine with its CPU
wheel on disk pip takes that one; elsewhere PyPI's build for the platform.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
SHARED = ROOT.parent / "shared"
TORCH = "torch==2.13.0"
CACHE = ROOT / ".cache"


def _install(session: nox.Session, extras: str) -> None:
    # pip's own output shown (nox hides it by default): the first install takes minutes
    session.install(TORCH, "-e", f".[{extras}]", silent=False)


def _data_env() -> dict[str, str]:
    """Use ../shared when present (offline machines); otherwise the harness downloads what it needs."""
    env = {}
    if (SHARED / "data").is_dir():
        env["HARNESS_DATA"] = str(SHARED / "data")
    return env


def _minilm() -> str:
    local = SHARED / "models" / "all-MiniLM-L6-v2"
    return f"hf:{os.path.relpath(local, ROOT)}" if local.is_dir() else "hf:sentence-transformers/all-MiniLM-L6-v2"


@nox.session(python=None)
def quickstart(session: nox.Session) -> None:
    """BM25 and all-MiniLM-L6-v2 on SciFact, then the leaderboard."""
    _install(session, "test")
    env = {**_data_env(), "HARNESS_CACHE": str(CACHE / "harness")}
    # the shell after the quickstart finds the same data and cache (`harness config` shows them; env still wins)
    for key, name in (("data", "HARNESS_DATA"), ("cache", "HARNESS_CACHE")):
        if name in env:
            session.run("harness", "config", "set", key, env[name])
    session.run("harness", "run", "--retriever", "bm25", "--retriever", _minilm(), "--dataset", "beir/scifact",
                env=env)
    session.run("harness", "leaderboard", "--metric", "ndcg@10", env=env)
    session.run("harness", "leaderboard", "--metric", "recall@100", env=env)
    session.log(f"harness is installed in {session.bin}: source {Path(session.bin) / 'activate'} to use it")


@nox.session(python=None)
def tests(session: nox.Session) -> None:
    """Every test tier (unit, real data in ../shared, slow), then the regression check (tolerance band and
    the paired per-query rule against baselines/records/)."""
    _install(session, "test")
    env = {**_data_env(), "HARNESS_TEST_CACHE": str(CACHE / "test"), "HARNESS_CACHE": str(CACHE / "test")}
    session.run("python", "-m", "pytest", *(session.posargs or ["-q"]), env=env)
    if (ROOT / "baselines" / "regression.csv").is_file() and not session.posargs:
        session.run("harness", "check", "baselines/regression.csv", "--paired", "--output-dir",
                    str(CACHE / "check-results"), "--junit", str(CACHE / "check-results" / "junit.xml"), env=env)


@nox.session(python=None)
def lint(session: nox.Session) -> None:
    """ruff (120 columns, E501 on) over everything, mypy --strict over harness/ (pyproject.toml). The package and
    its dependencies are installed as for the tests: strict checking needs torch's, numpy's and transformers'
    types (without them every tensor is Any); packages that ship none are ignore_missing_imports."""
    _install(session, "dev")
    session.run("ruff", "check", "harness", "tests", "benchmarks", "noxfile.py")
    session.run("mypy", "harness")


@nox.session(python=None)
def benchmarks(session: nox.Session) -> None:
    """The benchmark suite (see benchmarks/README.md): every script of every topic folder, each writing its
    dated JSON result beside itself; pass topic/name (e.g. ``end_to_end/encode_vs_beir``) to run some. The
    trainer experiment (hours) and the GPU device script run only when named."""
    _install(session, "dev")
    env = {**_data_env(), "HARNESS_CACHE": str(CACHE / "bench")}
    named = {"training/trainer_experiment"}
    found = sorted(f"{p.parent.name}/{p.stem}" for p in (ROOT / "benchmarks").glob("*/*.py")
                   if not p.name.startswith("_"))
    scripts = session.posargs or [s for s in found if s not in named]
    for script in scripts:
        session.run("python", "-m", "benchmarks." + script.removesuffix(".py").replace("/", "."), env=env)
    session.run("python", "-m", "benchmarks.report", "--write")  # the README's results section, from the JSON


#: the PyLate the comparison was checked against: the newest whose dependencies take torch 2.13 (PyLate 1.3 and later
#: pin other torch and sentence-transformers versions through fast-plaid)
PYLATE = "pylate==1.2.0"


@nox.session(python=None)
def pylate(session: nox.Session) -> None:
    """The ColBERT kind against PyLate (tests/pylate): token vectors and MaxSim scores equal to 1e-5 on tiny random
    models in both folder layouts. PyLate pins transformers and sentence-transformers versions that conflict with
    ours, so it gets a virtual environment of its own with the harness installed without its dependencies (the
    ColBERT path needs only these few)."""
    session.install(TORCH, PYLATE, "pytest", silent=False)
    session.install("platformdirs", "tqdm", "pyyaml", "regex", "requests", "filelock", "safetensors")
    session.install("--no-deps", "-e", ".")
    env = {"HARNESS_TEST_CACHE": str(CACHE / "pylate"), "HARNESS_CACHE": str(CACHE / "pylate")}
    session.run("python", "-c", "import pylate; print('PyLate', pylate.__version__)")
    session.run("python", "-m", "pytest", *(session.posargs or ["-q", "tests/pylate"]), env=env)
