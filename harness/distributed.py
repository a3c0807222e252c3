"""torch.distributed, in one place: process-group start, collectives, barriers (``tests/test_house.py`` fails
when another module calls torch.distributed itself).

- Who the ranks are comes from ``harness.launch``: torchrun's variables, or Slurm's under ``srun`` without
  torchrun (translated into torchrun's; torchrun's win where both are there).
- The group starts with the device bound: with CUDA, ``torch.cuda.set_device`` of this rank's own GPU
  (``harness.devices.rank_gpu``: the local rank, or the one GPU a rank sees) comes first, so implicit CUDA
  allocations and object collectives land on this rank's GPU, not cuda:0.
- The backend is NCCL when the process trains or encodes on CUDA, gloo otherwise (or as asked); every
  collective is given tensors on the backend's device (NCCL refuses CPU tensors; gloo takes them) and hands
  results back on the caller's device.
- Two waits. Barriers around work one rank does alone (a checkpoint, an evaluation, the token cache, a
  shard of encoding) wait long: the group's timeout (``--dist-timeout``, :data:`DEFAULT_TIMEOUT_S`). The
  collectives inside a training step wait short (``--step-timeout``, :data:`DEFAULT_STEP_TIMEOUT_S`, on a
  second group of the same ranks): a stalled or dead rank ends the job in minutes, not hours.
- A timeout, a lost peer or a failed collective raises :class:`CollectiveError`, one line naming the rank,
  what it waited for and the option to change (the trainer adds the step); the process exits non-zero and
  the last checkpoint is intact (checkpoints are written whole, then renamed into place). Under NCCL the
  wait is blocking (``TORCH_NCCL_BLOCKING_WAIT=1`` unless set), so a timeout is an exception this module
  turns into that line, not the watchdog's abort.
- :func:`solo` runs work on one rank as if it were alone (an evaluation during training): inside it
  :func:`world` is (0, 1) and :func:`barrier` does nothing, so code that synchronises ranks (encoding a
  corpus) cannot wait for ranks that are not there.

Outside a group (no torchrun, no srun with several tasks) everything here is a no-op and torch.distributed
is not touched; under torchrun a group starts even for one process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from harness.errors import HarnessError
from harness.launch import launch

if TYPE_CHECKING:
    import torch

DEFAULT_TIMEOUT_S = 7200  # barriers around one rank's work: a checkpoint and an evaluation on rank 0
DEFAULT_STEP_TIMEOUT_S = 600  # collectives inside a step: every rank computes the same work before them
BACKENDS = ("auto", "nccl", "gloo")
_SOLO = [False]
#: the group's state: the step group, the two waits and the options that set them (named in messages)
_STATE: dict[str, Any] = {"step_group": None, "timeouts": (DEFAULT_TIMEOUT_S, DEFAULT_STEP_TIMEOUT_S),
                          "options": ("--dist-timeout", "--step-timeout"), "broken": False, "device": None}
#: the long wait of `harness run` and `harness encode` under torchrun or srun (they have no option for it)
TIMEOUT_ENV = "HARNESS_DIST_TIMEOUT"
T = TypeVar("T")


class CollectiveError(HarnessError):
    """A collective or barrier that failed (timed out, lost a peer): one line, said by every rank that sees it."""


def _launched() -> bool:
    """Whether this process is one rank of a group (torchrun, even for one process; srun with several tasks)."""
    return launch().group


def local_rank() -> int:
    return launch().local_rank


def start(cuda: bool, timeout_s: int = DEFAULT_TIMEOUT_S, step_timeout_s: int = DEFAULT_STEP_TIMEOUT_S,
          backend: str = "auto", options: tuple[str, str] = ("--dist-timeout", "--step-timeout")
          ) -> tuple[int, int, bool]:
    """(rank, world size, whether this call created the group). In a group: this rank's GPU bound first when
    ``cuda``, then NCCL (gloo without CUDA, or when ``backend`` says gloo); a group that exists is joined as
    it is. ``options`` name the settings of the two waits in messages."""
    import torch
    import torch.distributed as dist

    where = launch()  # under srun: torchrun's variables written from Slurm's, for env://
    if not where.group:
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if backend not in BACKENDS:
        raise HarnessError(f"--dist-backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if cuda:
        from harness.devices import rank_gpu

        # before any CUDA work: no rank may default to cuda:0
        torch.cuda.set_device(rank_gpu(where.local_rank, where.local_world_size, torch.cuda.device_count()))
    chosen = "nccl" if cuda and backend != "gloo" else "gloo"
    if chosen == "nccl" and backend == "nccl" and not cuda:
        raise HarnessError("--dist-backend nccl needs CUDA; this process runs on the CPU (use gloo)")
    if chosen == "nccl":
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")  # a timeout is an exception here, not an abort
    _STATE.update(timeouts=(timeout_s, step_timeout_s), options=options, broken=False)
    what = f"starting the process group ({chosen}) at {os.environ.get('MASTER_ADDR', '?')}:" \
           f"{os.environ.get('MASTER_PORT', '?')}"
    _guard(what, LONG, lambda: dist.init_process_group(backend=chosen, timeout=timedelta(seconds=timeout_s)))
    if dist.get_world_size() > 1:
        _STATE["step_group"] = _guard("creating the step group", LONG,
                                      lambda: dist.new_group(backend=chosen, timeout=timedelta(seconds=step_timeout_s)))
    return dist.get_rank(), dist.get_world_size(), True


LONG, STEP = 0, 1  # which wait a collective has: the group's (barriers) or the step group's


def _guard(what: str, wait: int, fn: Callable[[], T]) -> T:
    """``fn()``, with a failure of the collective turned into one line naming this rank, what it waited for and
    the option that sets how long (``wait``: :data:`LONG` or :data:`STEP`)."""
    try:
        return fn()
    except HarnessError:
        raise
    except Exception as e:  # torch raises RuntimeError, DistError, DistBackendError, ... by backend and version
        _STATE["broken"] = True
        rank, size = _rank_size_or_launch()
        limit, option = _STATE["timeouts"][wait], _STATE["options"][wait]
        cause = " ".join(str(e).split())[:200] or type(e).__name__
        hint = "ranks share one GPU (NCCL needs one GPU per rank); " if "Duplicate GPU" in str(e) else ""
        raise CollectiveError(f"rank {rank} of {size}: {what} failed ({type(e).__name__}: {cause}); {hint}a rank "
                              f"stalled, died or lost its connection, or waited past {option} {limit} s: every "
                              "rank stops; the last checkpoint resumes with --resume") from None


def _rank_size_or_launch() -> tuple[int, int]:
    where = launch()
    return where.rank, where.world_size


def stop() -> None:
    """End the group; after a failed collective an NCCL group is left to the process's exit (destroying a
    communicator that waits for a lost peer can hang)."""
    import torch.distributed as dist

    _STATE["device"] = None  # the next group follows the next run's --device
    if dist.is_available() and dist.is_initialized():
        if _STATE["broken"] and dist.get_backend() == "nccl":
            return
        _STATE["step_group"] = None
        dist.destroy_process_group()


def compute_on(device: str) -> None:
    """Say what this process computes on (``--device`` as given: ``auto``, ``cpu``, ``cuda:1``, ...) before
    :func:`world` starts the group: NCCL with this rank's GPU bound for a CUDA device (``auto`` where CUDA is
    present), gloo for the CPU or MPS. Unsaid: CUDA where it is present. A started group keeps its backend.
    Nothing is imported here (a run that reuses every record never imports torch)."""
    _STATE["device"] = device


def on_cuda(device: str) -> bool:
    """Whether ``--device`` means CUDA here: ``auto``, ``cuda`` or ``cuda:N`` where CUDA is present (a CUDA
    device on a machine without one starts gloo, and the device check names the devices there are)."""
    import torch

    return (device == "auto" or device.startswith("cuda")) and torch.cuda.is_available()


def world() -> tuple[int, int]:
    """(rank, world size), starting the group on first use in a group of ranks (NCCL when the process computes
    on CUDA: :func:`compute_on`)."""
    if _SOLO[0] or not _launched():
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        wait = os.environ.get(TIMEOUT_ENV, "").strip()
        if wait and not (wait.isdigit() and int(wait) > 0):
            raise HarnessError(f"{TIMEOUT_ENV}={wait!r}: the seconds a rank waits for the others, a whole number > 0")
        start(on_cuda(_STATE["device"] or "auto"), int(wait) if wait else DEFAULT_TIMEOUT_S,
              options=(TIMEOUT_ENV, TIMEOUT_ENV))
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    """Whether collectives reach other ranks now (a started group of more than one, outside :func:`solo`)."""
    if _SOLO[0] or not _launched():
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier(what: str = "a barrier") -> None:
    """Every rank waits here for the others, up to the group's long timeout (``--dist-timeout``): for work one
    rank does alone (``what`` says which, for the message if the wait fails)."""
    if is_distributed():
        import torch.distributed as dist

        _guard(f"waiting at {what}", LONG, lambda: dist.barrier())


def together(what: str, work: Callable[[], T]) -> T:
    """``work()`` on this rank (work one rank does alone passes a no-op on the others), then a barrier at which
    every rank learns whether any rank's work failed: the rank that failed raises its own error, every other
    one a :class:`CollectiveError` naming that rank and its error. So no rank waits out the long timeout
    (``--dist-timeout``) for one that has stopped: under torchrun its agent would end the others, under srun
    without torchrun nothing would. Outside a group: ``work()``."""
    failure: BaseException | None = None
    result: T | None = None
    try:
        result = work()
    except BaseException as e:  # any error, Ctrl-C too: the others must hear of it before this rank leaves
        failure = e
    if is_distributed():
        note = None if failure is None else " ".join(str(failure).split())[:300] or type(failure).__name__
        try:
            notes = _guard(f"waiting at {what}", LONG, lambda: _gathered(note))
        except CollectiveError:
            if failure is not None:  # the gather failed too (a dead peer): this rank's own error is the news
                raise failure from None
            raise
        if failure is None:
            failed = [(rank, n) for rank, n in enumerate(notes) if n is not None]
            if failed:
                rank, n = failed[0]
                raise CollectiveError(f"rank {rank} failed at {what} ({n}); every rank stops")
    if failure is not None:
        raise failure
    return cast(T, result)  # work() returned: result is its value


def _gathered(obj: Any) -> list[Any]:
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def solo() -> Iterator[None]:
    """Run the body on this rank alone: no collective inside it reaches (or waits for) another rank."""
    before = _SOLO[0]
    _SOLO[0] = True
    try:
        yield
    finally:
        _SOLO[0] = before


def _backend_device(like: torch.Tensor) -> torch.device:
    """Where the backend wants tensors (``devices.collective_device``): this rank's GPU for NCCL, the CPU for
    gloo."""
    import torch.distributed as dist

    from harness.devices import collective_device

    return collective_device(str(dist.get_backend()))


def _step_group() -> Any:
    return _STATE["step_group"]


def all_reduce(x: torch.Tensor, op: str = "sum", what: str = "an all-reduce") -> torch.Tensor:
    """The sum (or "min", "max") of ``x`` over ranks, on ``x``'s device (``x`` itself outside a group). A
    step collective: it waits ``--step-timeout`` at most."""
    if not is_distributed():
        return x
    import torch.distributed as dist

    ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    y = x.to(_backend_device(x)).contiguous()
    _guard(what, STEP, lambda: dist.all_reduce(y, op=ops[op], group=_step_group()))
    return y.to(x.device)


def all_gather(x: torch.Tensor, what: str = "an all-gather") -> list[torch.Tensor]:
    """``x`` of every rank, in rank order, on ``x``'s device (same shapes on every rank); a step collective."""
    if not is_distributed():
        return [x]
    import torch
    import torch.distributed as dist

    y = x.to(_backend_device(x)).contiguous()
    parts = [torch.empty_like(y) for _ in range(dist.get_world_size())]
    _guard(what, STEP, lambda: dist.all_gather(parts, y, group=_step_group()))
    return [p.to(x.device) for p in parts]


def all_gather_object(obj: Any) -> list[Any]:
    """A picklable object of every rank, in rank order (object collectives only where tensors do not fit)."""
    if not is_distributed():
        return [obj]
    return _guard("gathering every rank's state", LONG, lambda: _gathered(obj))


def rank_and_size() -> tuple[int, int]:
    """(rank, world size) of a started group without starting one ((0, 1) when alone)."""
    if not is_distributed():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def cpu_threads() -> int:
    """Threads for CPU compute in this process: the cores this process may run on (its CPU affinity,
    which containers and batch schedulers set), shared among the ranks torchrun started on this node."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    launch()  # under srun: LOCAL_WORLD_SIZE written from Slurm's variables
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
