"""online: Deep Mutual Learning (Zhang et al. 2018) — the student and a cohort of peers learn together from scratch.

No pretrained teacher. Every member k of the cohort (the student and each peer) minimises
``(1 - alpha) * CE(z_k, y) + alpha * mean_{l != k} KL(softmax(z_l / T) || softmax(z_k / T)) * T^2``,
with the other members' predictions detached (each member is taught by the others, never through them). All members
step together on the same batch (the simultaneous form of DML; the paper alternates updates within a step), so one
optimiser over the whole cohort is the same as one per member. Peers may be other architectures, e.g. a big network
trained alongside the small one. The best epoch is picked by the *student's* validation accuracy; only the student is
saved unless ``keep_peers``, so what the cohort adds for training never reaches export.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from edgekd.core.config import ModelSpec
from edgekd.distill.losses import soft_target_loss
from edgekd.distill.strategies.base import StrategyConfig, StrategyResult, register_strategy


class OnlineConfig(StrategyConfig):
    kind: Literal["online"] = "online"
    peers: list[ModelSpec] | None = Field(
        None, min_length=1, max_length=8, description="cohort peers trained with the student (default: one peer "
        "with the student's architecture, initialised differently)"
    )  # fmt: skip
    keep_peers: bool = Field(False, description="also save the peers as artifacts <output>_peer1, <output>_peer2...")

    def peer_specs(self, student: ModelSpec) -> list[dict]:
        return [p.as_dict() for p in (self.peers or [student])]

    def extra_outputs(self, output: str) -> list[str]:
        return [f"{output}_peer{i + 1}" for i in range(len(self.peers or [None]))] if self.keep_peers else []


def mutual_loss(
    logits: list[torch.Tensor], y: torch.Tensor, temperature: float, alpha: float, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Sum over cohort members of each member's DML loss; the others' logits are detached targets."""
    total = logits[0].new_zeros(())
    for k, z in enumerate(logits):
        others = [o.detach() for j, o in enumerate(logits) if j != k]
        mimic = sum(soft_target_loss(z, o, temperature) for o in others) / len(others)
        total = total + (1.0 - alpha) * F.cross_entropy(z, y, label_smoothing=label_smoothing) + alpha * mimic
    return total


class Cohort(nn.Module):
    """The student and its peers as one trainable module. ``forward`` is the student's, so validation, best-epoch
    selection and what ``fit`` returns follow the student; ``loss`` is the whole cohort's."""

    def __init__(self, student: nn.Module, peers: list[nn.Module], temperature: float, alpha: float, smoothing: float):
        super().__init__()
        self.student = student
        self.peers = nn.ModuleList(peers)
        self.temperature, self.alpha, self.smoothing = temperature, alpha, smoothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        outs = [logits] + [p(x).float() for p in self.peers]
        return mutual_loss(outs, y, self.temperature, self.alpha, self.smoothing)


def _check(scfg: OnlineConfig, cfg, pipeline) -> list[str]:
    """Options that act on a fixed teacher's signal would be silently ignored by a cohort: refuse them."""
    if getattr(cfg, "purify", None) is not None:
        return ["strategy 'online' has no fixed teacher to purify: remove 'purify'"]
    if cfg.losses:
        kinds = ", ".join(sorted({t.kind for t in cfg.losses}))
        return [
            f"strategy 'online' has no fixed teacher for the 'losses' terms ({kinds}): remove them (the cohort "
            "members already teach each other with soft targets)"
        ]
    return []


@register_strategy("online", OnlineConfig, needs_teacher=False, check=_check)
def run_online(scfg: OnlineConfig, env) -> StrategyResult:
    from edgekd.training.loop import accuracy

    cfg = env.cfg
    student = env.new_student()
    specs = scfg.peer_specs(cfg.student)
    # a different seed per peer: identical initial weights on identical batches would make the cohort one model
    peers = [env.new_student(spec, seed_offset=i + 1) for i, spec in enumerate(specs)]
    cohort = Cohort(student, peers, cfg.temperature, cfg.alpha, cfg.train.label_smoothing)
    res = env.fit(cohort, "cohort", f"online (DML, cohort of {len(peers) + 1})")
    cohort.cpu()
    peer_acc = [accuracy(p, env.data, "val") for p in peers]
    meta = {"best_epoch": res.best_epoch, "history": res.history, "peers": specs, "peer_val_accuracy": peer_acc}
    extra = []
    if scfg.keep_peers:
        extra = list(zip(scfg.extra_outputs(cfg.output), peers, specs, strict=True))
    return StrategyResult(student, meta, extra)
