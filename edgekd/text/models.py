"""On-device students for sentence embeddings, registered by name: a small Transformer and a 1-D CNN.

Both keep the teacher's vocabulary (so one tokenizer serves teacher and student) but store it in a narrow
embedding (``embed_dim``, e.g. 64) widened by a linear projection: the teacher's 30,522-token vocabulary at width
128 would alone be 3.9 M parameters, more than the 1/6-of-the-teacher budget. Both take ``(input_ids,
attention_mask)`` at a fixed maximum length, pool the token vectors with the mask (mean, as the teacher does),
project to the teacher's width and L2-normalise, so their output is directly comparable with the teacher's.

Everything is written with plain ops (matmul, softmax, gelu-tanh, conv1d) so that ONNX, litert-torch and PT2E int8
quantization all see simple graphs; a large negative additive mask (not -inf) keeps int8 softmax inputs finite.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.core.errors import ConfigError, ModelError
from edgekd.core.registry import Registry
from edgekd.text.teacher import l2_normalize, masked_mean

TEXT_MODELS: Registry = Registry("text model")
MASK_VALUE = -1e4
# BERT-uncased vocabularies (all-MiniLM-L6-v2's included): [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103
UNK_ID = 100
SPECIAL_IDS = (0, 100, 101, 102, 103)


class _Layer(nn.Module):
    """A post-LayerNorm BERT encoder layer that can hand back its attention map."""

    def __init__(self, hidden: int, heads: int, ffn: int):
        super().__init__()
        if hidden % heads:
            raise ModelError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads, self.dh = heads, hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ln1, self.ln2 = nn.LayerNorm(hidden, eps=1e-12), nn.LayerNorm(hidden, eps=1e-12)
        self.ff1, self.ff2 = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, h = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.dh).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.dh) + bias, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, n, h)
        x = self.ln1(x + self.out(y))
        x = self.ln2(x + self.ff2(F.gelu(self.ff1(x), approximate="tanh")))
        return x, att


class _Embed(nn.Module):
    """The teacher's vocabulary in a narrow table, widened by a projection (a low-rank factorisation, as ALBERT).

    With ``rows`` (fewer than the vocabulary), the table is trimmed: a constant index map ``remap`` (a buffer, saved
    with the weights and exported as a Gather) sends each of the teacher's token ids to its row, and every token
    without a row of its own to one shared row (the stage points them at ``[UNK]``'s). The model's inputs stay the
    teacher's token ids; only the table shrinks, so the freed budget buys width.
    """

    def __init__(self, vocab_size: int, embed_dim: int, width: int, rows: int | None = None):
        super().__init__()
        if rows is not None and not 1 <= rows <= vocab_size:
            raise ModelError(f"rows {rows} must be between 1 and the vocabulary size {vocab_size}")
        self.table = nn.Embedding(rows or vocab_size, embed_dim)
        self.proj = nn.Linear(embed_dim, width) if embed_dim != width else nn.Identity()
        if rows is not None:
            self.register_buffer("remap", torch.zeros(vocab_size, dtype=torch.int64))

    def keep_tokens(self, keep: np.ndarray, fallback: int) -> None:
        """Give the token ids in ``keep`` (sorted, unique) rows 0..len-1; every other id shares ``fallback``'s row."""
        keep = np.asarray(keep, dtype=np.int64)
        if not hasattr(self, "remap") or len(keep) != self.table.num_embeddings:
            raise ModelError(f"{len(keep)} kept tokens for a table of {self.table.num_embeddings} rows")
        if fallback not in keep:
            raise ModelError(f"the fallback token id {fallback} must keep a row of its own")
        remap = np.full(len(self.remap), int(np.searchsorted(keep, fallback)), np.int64)
        remap[keep] = np.arange(len(keep))
        self.remap.copy_(torch.from_numpy(remap))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "remap"):
            ids = self.remap[ids]
        return self.proj(self.table(ids))


@TEXT_MODELS.register("text_transformer")
class TextTransformer(nn.Module):
    """A 2-4 layer, 128-256 wide BERT-style encoder with mean pooling."""

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        out_dim: int,
        hidden: int = 128,
        layers: int = 4,
        heads: int = 4,
        ffn: int = 512,
        embed_dim: int = 64,
        rows: int | None = None,
    ):
        super().__init__()
        self.embed = _Embed(vocab_size, embed_dim, hidden, rows)
        self.pos = nn.Parameter(torch.zeros(1, max_length, hidden))
        nn.init.normal_(self.pos, std=0.02)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(_Layer(hidden, heads, ffn) for _ in range(layers))
        self.head = nn.Linear(hidden, out_dim)
        self.widths = [hidden] * (layers + 1)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Embedding, hidden states (after the embedding and after each layer) and attention maps."""
        n = input_ids.shape[1]
        x = self.ln(self.embed(input_ids) + self.pos[:, :n])
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * MASK_VALUE
        hidden, atts = [x], []
        for layer in self.layers:
            x, att = layer(x, bias)
            hidden.append(x)
            atts.append(att)
        return l2_normalize(self.head(masked_mean(x, attention_mask))), hidden, atts

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.features(input_ids, attention_mask)[0]


@TEXT_MODELS.register("text_cnn")
class TextCNN(nn.Module):
    """A non-Transformer student: residual 1-D convolutions over the token sequence, masked mean pooling."""

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        out_dim: int,
        hidden: int = 256,
        layers: int = 4,
        kernel: int = 5,
        embed_dim: int = 64,
        rows: int | None = None,
    ):
        super().__init__()
        self.embed = _Embed(vocab_size, embed_dim, hidden, rows)
        self.pos = nn.Parameter(torch.zeros(1, hidden, max_length))
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2) for _ in range(layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers))
        self.head = nn.Linear(hidden, out_dim)
        self.widths = [hidden] * (layers + 1)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        n = input_ids.shape[1]
        m = attention_mask[:, None, :].to(torch.float32)
        x = (self.embed(input_ids).transpose(1, 2) + self.pos[:, :, :n]) * m  # (B, C, L): padding stays zero
        hidden = [x.transpose(1, 2)]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = (x + F.gelu(norm(conv(x)), approximate="tanh")) * m
            hidden.append(x.transpose(1, 2))
        return l2_normalize(self.head(masked_mean(x.transpose(1, 2), attention_mask))), hidden, []

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.features(input_ids, attention_mask)[0]


def build_text_model(spec: dict, vocab_size: int, max_length: int, out_dim: int) -> nn.Module:
    """A registered text student from ``{"name": ..., "kwargs": {...}}``."""
    name = spec.get("name") or ""
    factory = TEXT_MODELS.get(name)
    try:
        return factory(vocab_size=vocab_size, max_length=max_length, out_dim=out_dim, **(spec.get("kwargs") or {}))
    except TypeError as exc:
        raise ConfigError(
            f"cannot build text model '{name}' with kwargs {sorted(spec.get('kwargs') or {})}: {exc}"
        ) from None


def init_embedding_from_teacher(
    student: nn.Module, teacher_table: torch.Tensor, keep: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Start the student's narrow table at the teacher's word embeddings' top principal components.

    DistilBERT initialises from the teacher; the widths differ here, so the best rank-k linear summary (PCA) of the
    teacher's table is the closest start. A trimmed table (``keep``: the token ids its rows hold) starts at the PCA
    of those tokens' rows. Returns the mean row (D,) and the components (k, D), float64.
    """
    if keep is not None:
        teacher_table = teacher_table[torch.as_tensor(np.asarray(keep, dtype=np.int64))]
    table = student.embed.table
    k = table.embedding_dim
    if teacher_table.shape[0] != table.num_embeddings or k > min(teacher_table.shape):
        raise ModelError(f"cannot initialise a {tuple(table.weight.shape)} table from {tuple(teacher_table.shape)}")
    e = teacher_table.detach().double()
    mean = e.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(e - mean, full_matrices=False)
    comps = v[:k]  # (k, D)
    with torch.no_grad():
        table.weight.copy_(((e - mean) @ comps.t()).float())
    return mean[0], comps


def kept_tokens(train, vocab_size: int, rows: int, special_ids=SPECIAL_IDS) -> np.ndarray:
    """The token ids that get a table row (sorted): the special tokens, then the training split's most frequent
    tokens (ties to the lower id) until ``rows`` are taken; tokens never seen in training get none."""
    special = np.unique(np.asarray(special_ids, dtype=np.int64))
    if rows <= len(special):
        raise ModelError(f"vocab_rows {rows} leaves no row beside the {len(special)} special tokens")
    counts = np.bincount(train.ids[train.mask == 1].ravel(), minlength=vocab_size)
    counts[special] = 0
    order = np.argsort(-counts, kind="stable")
    seen = order[: min(rows - len(special), int((counts > 0).sum()))]
    return np.union1d(special, seen)


def param_count(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def export_inputs(max_length: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Example inputs at the fixed length: a short sentence then padding (so masking is exercised)."""
    ids = torch.zeros(batch, max_length, dtype=torch.int64)
    mask = torch.zeros(batch, max_length, dtype=torch.int64)
    n = max(2, min(8, max_length))
    ids[:, :n] = torch.as_tensor(np.arange(101, 101 + n))
    mask[:, :n] = 1
    return ids, mask
