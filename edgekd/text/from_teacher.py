"""Start a Transformer student from the teacher's own layers: depth- and width-pruned MiniLM, then distilled.

DistilBERT starts its student from every second teacher layer; Minitron (Muralidharan et al. 2024) showed that
pruning a trained network (depth and FFN width, neurons ranked by their activations) and then distilling beats
training the small network from scratch. Here the student keeps the teacher's width (384) and heads, a few chosen
teacher layers, and in each of them only the ``ffn`` intermediate neurons that matter most on training sentences
(importance: mean |GELU activation| over real tokens x the norm of the neuron's output weights). The narrow
embedding table starts at the teacher's PCA (``init_embedding_from_teacher``) and its projection at the PCA basis
plus the mean, so table x projection reproduces the teacher's word vectors up to rank ``embed_dim``; positions are
the teacher's first ``max_length`` rows plus its (single) token-type vector; the pooled output head starts as the
identity. Everything after this is ordinary distillation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgekd.core.errors import ModelError
from edgekd.distill.taps import FeatureTaps
from edgekd.text.models import init_embedding_from_teacher


def ffn_importance(bert: nn.Module, ids: np.ndarray, mask: np.ndarray, batch_size: int = 64) -> list[torch.Tensor]:
    """Per layer, each intermediate neuron's mean |activation| over real tokens x the norm of its output weights."""
    layers = bert.encoder.layer
    names = [f"encoder.layer.{i}.intermediate" for i in range(len(layers))]
    sums = [torch.zeros(layer.intermediate.dense.out_features, dtype=torch.float64) for layer in layers]
    count = 0
    taps = FeatureTaps(bert, names, "the teacher")
    try:
        with torch.no_grad():
            for b in range(0, len(ids), batch_size):
                n = max(int(mask[b : b + batch_size].sum(1).max()), 1)
                i, m = torch.from_numpy(ids[b : b + batch_size, :n]), torch.from_numpy(mask[b : b + batch_size, :n])
                bert(input_ids=i, attention_mask=m)
                out = taps.take()
                for k, name in enumerate(names):
                    sums[k].add_((out[name].abs() * m.unsqueeze(-1)).sum((0, 1)).double())
                count += int(m.sum())
    finally:
        taps.remove()
    return [
        (s / max(count, 1)).float() * layer.output.dense.weight.detach().norm(dim=0)
        for s, layer in zip(sums, layers, strict=True)
    ]


def init_from_teacher_layers(
    student: nn.Module,
    bert: nn.Module,
    layers: list[int],
    ids: np.ndarray,
    mask: np.ndarray,
    keep: np.ndarray | None = None,
) -> dict:
    """Copy teacher ``layers`` (0-based) into ``student`` (a ``text_transformer``), FFNs pruned by importance.

    ``ids``/``mask``: training sentences that rank the FFN neurons. Returns what was kept, for the stage's notes.
    """
    cfg = bert.config
    width, heads = student.widths[0], student.layers[0].heads
    if (width, heads) != (cfg.hidden_size, cfg.num_attention_heads):
        raise ModelError(
            f"teacher_layers needs the teacher's width and heads ({cfg.hidden_size}, {cfg.num_attention_heads}); "
            f"the student has ({width}, {heads})"
        )
    if len(layers) != len(student.layers) or not all(0 <= t < cfg.num_hidden_layers for t in layers):
        raise ModelError(
            f"teacher_layers {layers}: need one teacher layer (0..{cfg.num_hidden_layers - 1}) per student layer "
            f"({len(student.layers)})"
        )
    ffn = student.layers[0].ff1.out_features
    if ffn > cfg.intermediate_size:
        raise ModelError(f"student ffn {ffn} is wider than the teacher's {cfg.intermediate_size}")
    importance = ffn_importance(bert, ids, mask)
    emb = bert.embeddings
    with torch.no_grad():
        mean, comps = init_embedding_from_teacher(student, emb.word_embeddings.weight, keep)
        proj = student.embed.proj
        if isinstance(proj, nn.Linear):
            proj.weight.copy_(comps.t().float())
            proj.bias.copy_(mean.float())
        else:  # a full-width table: the teacher's rows themselves
            words = emb.word_embeddings.weight
            student.embed.table.weight.copy_(words if keep is None else words[torch.as_tensor(np.asarray(keep))])
        n = student.pos.shape[1]
        student.pos.copy_((emb.position_embeddings.weight[:n] + emb.token_type_embeddings.weight[0]).unsqueeze(0))
        student.ln.load_state_dict(emb.LayerNorm.state_dict())
        kept_share = []
        for s, t in zip(student.layers, layers, strict=True):
            tl = bert.encoder.layer[t]
            att = tl.attention
            s.qkv.weight.copy_(torch.cat([att.self.query.weight, att.self.key.weight, att.self.value.weight]))
            s.qkv.bias.copy_(torch.cat([att.self.query.bias, att.self.key.bias, att.self.value.bias]))
            s.out.load_state_dict(att.output.dense.state_dict())
            s.ln1.load_state_dict(att.output.LayerNorm.state_dict())
            score = importance[t]
            top = torch.sort(torch.topk(score, ffn).indices).values
            s.ff1.weight.copy_(tl.intermediate.dense.weight[top])
            s.ff1.bias.copy_(tl.intermediate.dense.bias[top])
            s.ff2.weight.copy_(tl.output.dense.weight[:, top])
            s.ff2.bias.copy_(tl.output.dense.bias)
            s.ln2.load_state_dict(tl.output.LayerNorm.state_dict())
            kept_share.append(round(float(score[top].sum() / score.sum()), 3))
        student.head.weight.copy_(torch.eye(student.head.out_features, student.head.in_features))
        student.head.bias.zero_()
    return {"teacher_layers": list(layers), "ffn": ffn, "importance_kept": kept_share}
