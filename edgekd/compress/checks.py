"""Checks ``edgekd validate`` runs for the prune and qat stages, before anything trains.

They need the model an earlier stage builds, so they run as stage ``check`` hooks (after every stage's own config has
validated): the spec is followed back through the stages that produce the artifact (teacher, distill, prune, qat),
the model is built with the data's channels, and the same code the stage runs is tried on it — layer names,
torch-pruning's trace and a dry run of every pruning step, and the int8 quantizer's op support. A model whose spec
cannot be found or built here is checked when the stage runs instead.
"""

from __future__ import annotations

import torch

from edgekd.core.config import PipelineConfig, StageConfig
from edgekd.core.console import step
from edgekd.core.errors import EdgekdError


def _example(pipeline: PipelineConfig, batch: int = 1) -> torch.Tensor:
    d = pipeline.data
    channels = d.channels or (1 if d.source == "digits" else 3)
    return torch.randn(batch, channels, d.image_size, d.image_size, generator=torch.Generator().manual_seed(0))


def _build(pipeline: PipelineConfig, cfg: StageConfig):
    from edgekd.models import build_model

    spec = pipeline.spec_of(cfg.model, cfg)
    if spec is None:
        return None
    classes = pipeline.data.model_io()[1]
    try:
        with step(f"building {spec.get('name') or spec.get('import')}"):
            return build_model(spec, _example(pipeline).shape[1], classes, pretrained=False).eval()
    except EdgekdError:
        return None  # the stage that builds it reports that


def check_prune(cfg, pipeline: PipelineConfig) -> list[str]:
    """Layer names exist; the model traces; every step's target is reachable and the pruned model still runs."""
    from edgekd.compress import pruning

    model = _build(pipeline, cfg)
    if model is None:
        return []
    try:
        pruning.resolve_layers(model, cfg.ignore_layers)
        example = _example(pipeline)
        if cfg.mode == "unstructured":
            return []
        # l2 for the dry run: the shapes it reaches are those of any criterion (Taylor would need data)
        settings = pruning.PruneSettings("l2", cfg.ratio, cfg.macs_reduction, cfg.global_pruning,
                                         cfg.max_layer_ratio, cfg.round_to, cfg.steps)  # fmt: skip
        with step(f"tracing {type(model).__name__} for torch-pruning"):
            pruner = pruning.ChannelPruner(model, example, settings, cfg.ignore_layers)
        for k in range(1, cfg.steps + 1):
            with step(f"dry run of pruning step {k}/{cfg.steps}"):
                pruner.step(k)
    except EdgekdError as exc:
        return [str(exc)]
    return []


def check_qat(cfg, pipeline: PipelineConfig) -> list[str]:
    """Every op of the model is one the int8 quantizer handles (the layer and the op are named otherwise)."""
    from edgekd.compress.qat import check_quantizable

    model = _build(pipeline, cfg)
    if model is None:
        return []
    try:
        with step(f"exporting {type(model).__name__} to check its ops against the int8 quantizer"):
            check_quantizable(model, _example(pipeline))
    except EdgekdError as exc:
        return [str(exc)]
    return []
