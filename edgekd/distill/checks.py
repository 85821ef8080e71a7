"""Validate-time shape checks of the loss terms: the models are built and run once on a dummy batch.

Layer names are checked first (``taps.check_layers``, with close matches); this module then asks every term to
``build`` itself from the real feature shapes, exactly as training will, so a pair of layers whose channels differ
with ``adapter: false``, tokens that do not lie on a square grid, or a ``maps: transformer`` layer that is not an
attention map fail in ``edgekd validate``, in one line, before any training. Zoo models at the pipeline's image size
take milliseconds here. Each term is also computed once on that batch, which catches what shapes cannot show
(a square feature map is not an attention map).
"""

from __future__ import annotations

import torch

from edgekd.core.errors import ConfigError, EdgekdError
from edgekd.distill.base import LOSSES, Batch
from edgekd.distill.taps import FeatureTaps
from edgekd.models import build_model


def _features(model: torch.nn.Module, names: list[str], x: torch.Tensor) -> tuple[dict, torch.Tensor]:
    taps = FeatureTaps(model, names)
    try:
        with torch.no_grad():
            logits = model.eval()(x)
        return taps.take(), logits
    finally:
        taps.remove()


def term_errors(cfg, pipeline, teacher_spec: dict | None) -> list[str]:
    """One message per term whose layers' shapes do not fit it (empty when every term builds)."""
    terms = [LOSSES.get(t.kind).term_cls(t) for t in cfg.losses]
    if not terms or not cfg.uses_teachers:
        return []
    layers_s = list(dict.fromkeys(n for t in terms for n in t.student_layers()))
    layers_t = list(dict.fromkeys(n for t in terms for n in t.teacher_layers()))
    data = pipeline.data
    channels, classes = data.model_io()
    torch.manual_seed(0)
    x = torch.randn(2, channels, data.image_size, data.image_size)
    try:
        student = build_model(cfg.student.as_dict(), channels, classes, pretrained=False)
        s_feats, logits = _features(student, layers_s, x)
        t_feats, t_logits = {}, None
        if teacher_spec is not None:
            t_feats, t_logits = _features(build_model(teacher_spec, channels, classes, pretrained=False), layers_t, x)
    except EdgekdError:
        raise
    except Exception:  # a model that cannot run a dummy batch fails later, at its own stage, with its own error
        return []
    y = torch.zeros(len(x), dtype=torch.long)
    errors = []
    for i, term in enumerate(terms):
        if teacher_spec is None and (term.teacher_layers() or term.needs_teacher):
            continue  # teacher built elsewhere: its shapes are unknown until the run
        term.num_classes = int(logits.shape[-1])
        batch = Batch(x=x, y=y, student_logits=logits, teacher_logits=t_logits, student_feats=s_feats,
                      teacher_feats=t_feats)  # fmt: skip
        try:
            term.build({k: v.shape for k, v in s_feats.items()}, {k: v.shape for k, v in t_feats.items()})
            with torch.no_grad():
                term.eval()(batch)  # values too: e.g. attention maps whose rows must sum to 1
        except ConfigError as exc:
            errors.append(f"losses[{i}] ({term.cfg.kind}): {exc}")
        except Exception as exc:  # would fail the same way on the first training step
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            errors.append(f"losses[{i}] ({term.cfg.kind}): cannot be computed on these layers: {first}")
    return errors
