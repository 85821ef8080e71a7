"""Multi-process training with torch.distributed, started by ``torchrun`` (never a home-made launcher).

``torchrun --nproc_per_node N -m edgekd run pipeline.yaml`` starts N copies of the same command; torchrun sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, and :func:`session` joins them into one
process group (gloo on CPU; gloo for control messages and NCCL for tensors on GPU). Without those variables every
helper here is a no-op, so single-process code paths stay exactly as they were.

The rules the rest of edgekd follows: only rank 0 writes into the run directory (artifacts, manifests, reports,
checkpoints, the run lock); stages registered ``distributed=True`` (the training stages) run on every rank and the
others run on rank 0 while the rest wait for its result; every decision that must agree (cached or not, the best
epoch) is made once, on rank 0, and broadcast.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from edgekd.core.errors import EdgekdError, StageError

T = TypeVar("T")


def _dist():
    import torch.distributed as dist

    return dist


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


_ALL_RANKS = False


@contextmanager
def all_ranks(on: bool = True) -> Iterator[None]:
    """Mark code that every rank runs together (a ``distributed`` stage). Only there does training shard batches and
    synchronise; a stage that rank 0 runs alone trains as one process even under torchrun (else it would wait for
    ranks that are not training)."""
    global _ALL_RANKS
    before, _ALL_RANKS = _ALL_RANKS, on
    try:
        yield
    finally:
        _ALL_RANKS = before


def active() -> bool:
    """True where training must shard and synchronise: under torchrun, inside :func:`all_ranks`."""
    return _ALL_RANKS and is_distributed()


def rank() -> int:
    return _dist().get_rank() if is_distributed() else 0


def world_size() -> int:
    return _dist().get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "MASTER_ADDR" in os.environ


def barrier() -> None:
    if is_distributed():
        _dist().barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (pickled; for small control messages, not tensors)."""
    if not is_distributed():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src, group=_control_group())
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks, in place; returns it."""
    if is_distributed():
        _dist().all_reduce(t, op=_dist().ReduceOp.SUM, group=_group_for(t))
    return t


def all_gather_rows(t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``t`` (same shape on all ranks), in rank order."""
    if not is_distributed():
        return [t]
    out = [torch.empty_like(t) for _ in range(world_size())]
    _dist().all_gather(out, t.contiguous(), group=_group_for(t))
    return out


def average_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, so every rank holds one model.

    Each rank's running statistics come from its shard of every batch; their average is the estimate one process
    would have made for the means (exactly, with equal shards) and close to it for the variances.
    """
    if not active():
        return
    w = world_size()
    for buf in model.buffers():
        if buf.is_floating_point():
            all_reduce_sum(buf.data)
            buf.data.div_(w)


def shard_batch(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """This rank's part of one global batch: (positions in the batch, sample indices, loss weight).

    Rank r takes every W-th sample of each global batch (DistributedSampler's interleaving, applied per batch), so N
    processes together see exactly the batches one process sees. The weight scales the rank's mean loss so that the
    gradient DDP averages is the mean over the whole batch even when shards differ in size; a rank left without a
    sample (a last batch smaller than W) trains on one repeated sample with weight 0, keeping the collectives in step.
    """
    r, w = (rank(), world_size()) if active() else (0, 1)
    pos = np.arange(r, len(idx), w) if w > 1 else np.arange(len(idx))
    if len(pos) == 0:
        return np.arange(1), idx[:1], 0.0
    return pos, idx[pos], (w * len(pos) / len(idx)) if w > 1 else 1.0


def wrap(model: nn.Module, device: str) -> nn.Module:
    """``model`` under DistributedDataParallel when distributed (gradients averaged over ranks), else itself.

    ``broadcast_buffers=False``: BatchNorm statistics are averaged once per epoch (:func:`average_buffers`) rather
    than overwritten by rank 0's before every forward pass.
    """
    if not active() or not any(p.requires_grad for p in model.parameters()):
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.cuda.current_device()] if str(device).startswith("cuda") else None
    # newer torch renamed the switch; rank 0's parameters are broadcast at construction either way
    import inspect

    new = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    no_sync = {"forward_sync_buffers": False} if new else {"broadcast_buffers": False}
    return DistributedDataParallel(model, device_ids=ids, **no_sync)


_CONTROL = None


def _control_group():
    """Process group for pickled control messages: gloo (CPU) even when tensors go through NCCL."""
    return _CONTROL


def _group_for(t: torch.Tensor):
    """CPU tensors go through gloo (the control group when the default one is NCCL), CUDA tensors through NCCL."""
    return _CONTROL if t.device.type == "cpu" else None


def _timeout() -> datetime.timedelta:
    # ranks other than 0 wait at a collective while rank 0 alone converts and benchmarks (minutes)
    return datetime.timedelta(seconds=float(os.environ.get("EDGEKD_DIST_TIMEOUT_S", "7200")))


def pick_backend(device: str) -> str:
    """NCCL for CUDA tensors (the fast GPU path), gloo for CPU."""
    return "nccl" if device == "cuda" else "gloo"


@contextmanager
def session(device_pref: str = "cpu") -> Iterator[None]:
    """Join torchrun's process group for the duration of a run (nothing to do without torchrun).

    ``device_pref`` is the pipeline's ``device`` (cpu | cuda | auto): with CUDA each rank uses GPU ``LOCAL_RANK``.
    Ranks other than 0 print nothing but their own errors.
    """
    global _CONTROL
    dist = _dist()
    if not launched_by_torchrun() or dist.is_initialized():
        yield
        return
    use_cuda = device_pref in ("cuda", "auto") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = pick_backend("cuda" if use_cuda else "cpu")
    try:
        dist.init_process_group(backend=backend, timeout=_timeout())
    except Exception as exc:
        raise EdgekdError(f"torchrun: cannot join the process group ({backend}): {exc}") from None
    _CONTROL = dist.new_group(backend="gloo", timeout=_timeout()) if backend == "nccl" else None
    from edgekd.core import console

    quiet_before = os.environ.get("EDGEKD_QUIET")
    if dist.get_rank() != 0:
        os.environ["EDGEKD_QUIET"] = "1"
        console.console.quiet = True
    try:
        yield
    except BaseException:
        console.console.quiet = False  # a rank's own error is still printed, once, by the CLI
        raise
    finally:
        if dist.get_rank() != 0:
            _restore("EDGEKD_QUIET", quiet_before)
        _CONTROL = None
        dist.destroy_process_group()


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def on_main(fn: Callable[[], T], stage: str | None = None) -> T:
    """Run ``fn`` on rank 0 only and return its result on every rank (it must be picklable).

    An edgekd error on rank 0 is raised on every rank with the same message, so no rank is left waiting; any other
    exception on rank 0 is reported to the others as a stage error and re-raised there as is.
    """
    if not is_distributed():
        return fn()
    if is_main():
        try:
            value = fn()
        except BaseException as exc:
            broadcast_object(("error", _describe(exc)))
            raise
        return broadcast_object(("ok", value))[1]
    status, value = broadcast_object(None)
    if status == "error":
        raise _rebuild(value, stage)
    return value


def agree(value: Any, what: str) -> None:
    """Check that every rank computed the same (small, picklable) ``value``; a mismatch is an error on all ranks."""
    if not is_distributed():
        return
    values = [None] * world_size()
    _dist().all_gather_object(values, value, group=_control_group())
    if any(v != values[0] for v in values):
        raise EdgekdError(f"distributed ranks disagree on {what}: {values}")


def _describe(exc: BaseException) -> tuple[str, str, str | None]:
    stage = getattr(exc, "stage", None)
    msg = str(exc)
    if isinstance(exc, StageError) and msg.startswith(f"stage '{stage}': "):
        msg = msg[len(f"stage '{stage}': ") :]
    return type(exc).__name__, msg, stage


def _rebuild(desc: tuple[str, str, str | None], stage: str | None) -> EdgekdError:
    kind, msg, where = desc
    if where is not None:
        return StageError(where, msg)
    from edgekd.core import errors

    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, EdgekdError) and cls is not StageError:
        return cls(msg)
    return StageError(stage, f"rank 0 failed: {kind}: {msg}") if stage else EdgekdError(f"rank 0 failed: {msg}")
