"""What length-grouped batches buy the text distillation loop: padding and step time, grouped vs random batches.

    python benchmarks/experiments/text_batching.py runs/text_embedding/seed0   # a run of pipelines/text_embedding.yaml

Reads the run's cached training tokens (``01_teacher/tokens.npz``), builds the shipped Transformer student
(``distill_transformer`` in pipelines/text_embedding.yaml, trimmed table) and times ``--steps`` training steps
(the pipeline's pooled loss terms, AdamW, 1 thread) on batches from ``edgekd.text.train.batches`` with ``group``
off and on, the same batches the text ``distill`` stage draws. Run it on a quiet machine: the ratio is measured in
one run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from edgekd.text.models import UNK_ID, build_text_model, kept_tokens
from edgekd.text.train import PooledLoss, Split, batch_tensors, batches

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run directory of pipelines/text_embedding.yaml")
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokens = next(args.run.glob("*_teacher/tokens.npz"), None)
    if tokens is None:
        raise SystemExit(f"{args.run}: no *_teacher/tokens.npz (run pipelines/text_embedding.yaml there first)")
    with np.load(tokens) as z:
        ids, mask, teacher = z["ids_train"], z["mask_train"], z["teacher_train"]
    stages = yaml.safe_load((ROOT / "pipelines" / "text_embedding.yaml").read_text())["stages"]
    cfg = next(s for s in stages if s.get("name") == "distill_transformer")
    tmeta = json.loads((tokens.parent / "teacher.json").read_text())
    train = Split(ids, mask, teacher)
    keep = kept_tokens(train, tmeta["vocab_size"], cfg["vocab_rows"])
    kwargs = {**cfg["student"]["kwargs"], "rows": len(keep)}
    spec = {"name": cfg["student"]["name"], "kwargs": kwargs}
    student = build_text_model(spec, tmeta["vocab_size"], ids.shape[1], tmeta["hidden_size"])
    student.embed.keep_tokens(keep, UNK_ID)  # the trimmed table and its index map, as the stage builds them
    opt = torch.optim.AdamW(student.parameters(), cfg["lr"])
    lengths = mask.sum(1)
    pooled = PooledLoss(cfg["losses"], teacher)
    print(
        f"{len(ids):,} training sentences, length median {np.median(lengths):.0f}, p99 {np.percentile(lengths, 99):.0f}"
    )
    times = {}
    for group in (False, True):
        picked = batches(lengths, cfg["batch_size"], np.random.default_rng(0), group)[: args.steps]
        t0 = time.perf_counter()
        for r in picked:
            b_ids, b_mask, t = batch_tensors(train, r, lengths)
            emb = student(b_ids, b_mask)
            loss, _ = pooled(emb, t, np.random.default_rng(0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times[group] = (time.perf_counter() - t0) / len(picked)
        pad = np.mean([lengths[r].max() for r in picked])
        print(
            f"{'grouped' if group else 'random '} batches: padded length {pad:.1f} tokens, {times[group]:.3f} s/step "
            f"(~{times[group] * (len(ids) // cfg['batch_size']):.0f} s/epoch)"
        )
    print(f"speed-up of grouped batches: {times[False] / times[True]:.2f}x")


if __name__ == "__main__":
    main()
