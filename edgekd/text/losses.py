"""Distillation terms for sentence embeddings, combined with weights from YAML.

* ``cosine`` / ``mse`` on the pooled embedding (DistilBERT's cosine embedding loss; MSE as in sentence-transformers'
  multilingual distillation);
* ``relational``: the batch's pairwise cosine-similarity matrix of the student matched to the teacher's (MSE), the
  structure that retrieval and Spearman measure; ``rkd`` reuses edgekd's RKD distance term (edgekd/distill);
* ``anchor``: the student's cosine similarity to *every* training sentence's teacher embedding matched to the
  teacher's (MSE), computed exactly: with e = s - t (unit vectors) the mean over anchors a of ((s - t) . a)^2 is
  e^T M e, M the second-moment matrix of the teacher's training embeddings, so errors along the directions in which
  the teacher's sentences differ weigh most (the cosine term weighs all 384 directions alike);
* ``neighbors``: each sentence's similarities to a random bank of training sentences' teacher embeddings, as a
  softmax at temperature 0.05, matched to the teacher's by KL (CompRess, Koohpayegani et al. 2020): weighs the
  nearest sentences most, which is what top-k retrieval reads;
* ``hidden``: a chosen student layer's token states, linearly projected, matched to a teacher layer's (TinyBERT);
* ``attention``: a chosen layer's head-averaged attention distributions matched to the teacher's by KL (MiniLM's
  self-attention distribution transfer, averaged over heads because student and teacher head counts differ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distill.relational import rkd_distance


def cosine_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(s, t, dim=-1)).mean()


def mse_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # summed over the dimension: on unit vectors this is 2 (1 - cos), of the same scale as the cosine term
    return (s - t).pow(2).sum(-1).mean()


def relational_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """MSE between the off-diagonal cosine similarities of the batch under student and teacher."""
    su, tu = F.normalize(s, dim=-1), F.normalize(t, dim=-1)
    off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    return (su @ su.t() - tu @ tu.t())[off].pow(2).mean() * 10.0  # x10: similarities move in ~0.1 steps


def anchor_loss(s: torch.Tensor, t: torch.Tensor, moment: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the similarities to all training sentences (``moment``: E[a a^T] over them), x10."""
    e = F.normalize(s, dim=-1) - F.normalize(t, dim=-1)
    return ((e @ moment) * e).sum(-1).mean() * 10.0  # x10 as the relational term: the same quantity, more anchors


def neighbor_loss(s: torch.Tensor, t: torch.Tensor, bank: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """KL(teacher || student) of the softmax over similarities to ``bank`` (K, D) teacher embeddings."""
    b = F.normalize(bank, dim=-1)
    log_ps = F.log_softmax(F.normalize(s, dim=-1) @ b.t() / temperature, dim=-1)
    log_pt = F.log_softmax(F.normalize(t, dim=-1) @ b.t() / temperature, dim=-1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(-1).mean()


def second_moment(emb) -> torch.Tensor:
    """E[a a^T] of unit-normalised embeddings (N, D) -> (D, D), accumulated in float64."""
    a = F.normalize(torch.as_tensor(emb, dtype=torch.float64), dim=-1)
    return (a.t() @ a / max(len(a), 1)).float()


def rkd_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return rkd_distance(s, t)


def hidden_loss(proj: nn.Module, hs: torch.Tensor, ht: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-wise MSE between projected student states and teacher states, padding excluded."""
    m = mask.unsqueeze(-1).to(hs.dtype)
    return ((proj(hs) - ht).pow(2) * m).sum() / (m.sum() * ht.shape[-1]).clamp_min(1)


def attention_loss(a_s: torch.Tensor, a_t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of head-averaged attention rows, over real (non-padding) query tokens."""
    ps, pt = a_s.mean(1).clamp_min(1e-9), a_t.mean(1).clamp_min(1e-9)
    kl = (pt * (pt.log() - ps.log())).sum(-1)
    m = mask.to(kl.dtype)
    return (kl * m).sum() / m.sum().clamp_min(1)


POOLED = {"cosine": cosine_loss, "mse": mse_loss, "relational": relational_loss, "rkd": rkd_loss}
