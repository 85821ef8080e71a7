"""Text students, distillation terms and embedding metrics, on tiny models and a few sentences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.core.errors import ConfigError, ModelError
from edgekd.text.losses import POOLED, anchor_loss, attention_loss, hidden_loss, neighbor_loss, second_moment
from edgekd.text.metrics import embedding_metrics, linear_probe, similarity_spearman, topk_overlap
from edgekd.text.models import TEXT_MODELS, build_text_model, init_embedding_from_teacher, kept_tokens, param_count
from edgekd.text.train import LayerPair, Recipe, Split, TeacherStates, batches, distill

TINY = {
    "text_transformer": {"hidden": 16, "layers": 2, "heads": 2, "ffn": 32, "embed_dim": 8},
    "text_cnn": {"hidden": 16, "layers": 2, "kernel": 3, "embed_dim": 8},
}


def _batch(n=6, length=12, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, length), generator=g)
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return ids * mask, mask


@pytest.mark.parametrize("name", TEXT_MODELS.names())
def test_student_embedding_is_unit_and_ignores_padding(name):
    torch.manual_seed(0)
    model = build_text_model({"name": name, "kwargs": TINY[name]}, 50, 16, 24).eval()
    ids, mask = _batch(length=12)
    with torch.no_grad():
        e = model(ids, mask)
        padded = model(torch.nn.functional.pad(ids, (0, 4)), torch.nn.functional.pad(mask, (0, 4)))
    assert e.shape == (6, 24)
    assert torch.allclose(e.norm(dim=1), torch.ones(6), atol=1e-5)
    assert torch.allclose(e, padded, atol=1e-5)  # what the model sees past the mask does not matter


def test_pipeline_students_fit_the_one_sixth_budget():
    from _shared import ROOT

    from edgekd.core.loader import load_pipeline

    teacher_params = 22_565_376  # all-MiniLM-L6-v2 without the unused pooler
    stages = [s for s in load_pipeline(ROOT / "pipelines" / "text_embedding.yaml").stages if s.stage == "distill"]
    assert len(stages) == 2
    for st in stages:
        kwargs = {**st.student.kwargs, "rows": st.vocab_rows}  # the most rows the trimmed table can have
        assert param_count(build_text_model({"name": st.student.name, "kwargs": kwargs}, 30522, 64, 384)) <= (
            teacher_params / 6
        )


def test_unknown_model_and_bad_kwargs_are_config_errors():
    with pytest.raises(ConfigError, match="known: text_cnn"):
        build_text_model({"name": "gpt"}, 50, 8, 8)
    with pytest.raises(ConfigError, match="kwargs"):
        build_text_model({"name": "text_cnn", "kwargs": {"depth": 3}}, 50, 8, 8)


def test_pca_init_keeps_the_teachers_main_directions():
    torch.manual_seed(0)
    table = torch.randn(50, 32) * torch.linspace(3, 0.1, 32)
    model = build_text_model({"name": "text_cnn", "kwargs": TINY["text_cnn"]}, 50, 8, 8)
    init_embedding_from_teacher(model, table)
    got = model.embed.table.weight.detach()
    top8 = torch.linalg.eigvalsh(torch.cov(table.t())).sort(descending=True).values[:8]
    assert float(got.var(0).sum()) == pytest.approx(float(top8.sum()), rel=1e-4)  # the most variance 8 dims can hold


def test_terms_are_zero_when_the_student_matches():
    e = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    for name, fn in POOLED.items():
        assert float(fn(e, e)) == pytest.approx(0.0, abs=1e-5), name
        assert float(fn(e, torch.nn.functional.normalize(torch.randn(5, 8), dim=1))) > 0
    mask = torch.ones(2, 4)
    att = torch.softmax(torch.randn(2, 3, 4, 4), -1)
    assert float(attention_loss(att, att, mask)) == pytest.approx(0.0, abs=1e-6)
    h = torch.randn(2, 4, 6)
    assert float(hidden_loss(torch.nn.Identity(), h, h, mask)) == 0.0


def test_anchor_term_is_the_mean_similarity_error_over_every_anchor():
    g = torch.Generator().manual_seed(0)
    anchors = torch.nn.functional.normalize(torch.randn(300, 8, generator=g, dtype=torch.float64), dim=1)
    s, t = (torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1) for _ in range(2))
    brute = ((s.double() @ anchors.t() - t.double() @ anchors.t()) ** 2).mean() * 10.0
    got = anchor_loss(s, t, second_moment(anchors))
    assert float(got) == pytest.approx(float(brute), rel=1e-5)
    assert float(anchor_loss(t, t, second_moment(anchors))) == pytest.approx(0.0, abs=1e-7)
    bank = anchors[:64].float()
    assert float(neighbor_loss(t, t, bank)) == pytest.approx(0.0, abs=1e-6)
    assert float(neighbor_loss(s, t, bank)) > 0.1  # different sentences: different nearest anchors


def test_metrics_on_known_cases():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(40, 8))
    assert similarity_spearman(t, t) == pytest.approx(1.0)
    assert topk_overlap(t, t, 10) == 1.0
    m = embedding_metrics(t * 3, t)  # scale does not matter to cosine-based figures
    assert m["mean_cosine"] == pytest.approx(1.0) and m["top10_overlap"] == 1.0
    assert similarity_spearman(rng.normal(size=(40, 8)), t) < 0.3
    y = np.repeat([0, 1], 20)
    x = np.where(y[:, None] == 1, 1.0, -1.0) + 0.1 * rng.normal(size=(40, 3))
    assert linear_probe(x, y) == 1.0
    assert linear_probe(x, np.zeros(40, np.int64)) is None


def test_distill_moves_a_tiny_student_towards_the_teacher():
    torch.manual_seed(0)
    ids, mask = _batch(n=64, length=10, seed=1)
    teacher = build_text_model({"name": "text_cnn", "kwargs": TINY["text_cnn"]}, 50, 10, 12).eval()
    with torch.no_grad():
        t = teacher(ids, mask).numpy()
    split = Split(ids.numpy(), mask.numpy(), t)
    student = build_text_model({"name": "text_transformer", "kwargs": TINY["text_transformer"]}, 50, 10, 12)
    with torch.no_grad():
        before = float((student(ids, mask).numpy() * t).sum(1).mean())
    res = distill(
        student,
        split,
        split,
        Recipe(
            epochs=8,
            batch_size=16,
            lr=5e-3,
            weights=dict.fromkeys(["cosine", "relational", "anchor", "neighbors"], 1.0),
        ),
        seed=0,
        log=lambda m: None,
    )
    assert res.best_val["val_cosine"] > before + 0.2
    with pytest.raises(ValueError, match="need the teacher model"):
        distill(student, split, split, Recipe(epochs=1, layers=[LayerPair("hidden", 1, 1, 1.0)]), 0)


def test_kept_teacher_states_are_the_live_teachers_without_padding():
    # hidden-state terms replay the teacher's token states computed once (float16, padding dropped): a batch of them,
    # re-padded to the batch's width, must be what the teacher computes live on that batch
    torch.manual_seed(0)
    ids, mask = _batch(n=40, length=10, seed=3)
    teacher = build_text_model({"name": "text_transformer", "kwargs": TINY["text_transformer"]}, 50, 10, 12).eval()
    split = Split(ids.numpy(), mask.numpy(), np.zeros((40, 12), np.float32))
    kept = TeacherStates(teacher, split, [1, 2], batch_size=7)
    assert sorted(kept.flat) == [1, 2] and len(kept.flat[2]) == int(mask.sum())
    rows = np.array([5, 0, 17, 33])
    width = int(mask[rows].sum(1).max())
    with torch.no_grad():
        _, live, _ = teacher.features(ids[rows, :width], mask[rows, :width])
    got = kept.batch(rows, width)
    m = mask[rows, :width].bool()
    for k in (1, 2):
        assert got[k].shape == (4, width, 16)
        torch.testing.assert_close(got[k][m], live[k][m], atol=1e-2, rtol=1e-2)  # float16 storage
        assert float(got[k][~m].abs().sum()) == 0.0
    # and the distillation loop adds the replayed term to the loss and learns it
    student = build_text_model({"name": "text_transformer", "kwargs": TINY["text_transformer"]}, 50, 10, 12)
    with torch.no_grad():
        split.teacher[:] = teacher(ids, mask).numpy()
    recipe = Recipe(epochs=6, batch_size=8, lr=5e-3, layers=[LayerPair("hidden", 2, 2, 1.0)])
    hist = distill(student, split, split, recipe, seed=0, teacher=teacher, log=lambda m: None).history
    assert all(abs(h["loss"] - h["cosine"] - h["hidden"]) < 1e-4 for h in hist)
    assert 0 < hist[-1]["hidden"] < 0.8 * hist[0]["hidden"]


def test_length_grouped_batches_cover_each_row_once_with_less_padding():
    lengths = np.random.default_rng(0).integers(1, 65, size=1000)
    plain = batches(lengths, 32, np.random.default_rng(1), group=False)
    grouped = batches(lengths, 32, np.random.default_rng(1), group=True, window=10)
    for bs in (plain, grouped):
        rows = np.concatenate(bs)
        assert len(bs) == 31 and all(len(b) == 32 for b in bs) and len(np.unique(rows)) == len(rows) == 992
    pad = [np.mean([lengths[b].max() for b in bs]) for bs in (plain, grouped)]
    assert pad[1] < 0.6 * pad[0]  # a batch pads to its longest sentence: grouped batches are far shorter
    starts = [int(b[0]) for b in grouped]
    assert starts != sorted(starts, key=lambda r: -lengths[r])  # the batch order is still shuffled
    assert [b.tolist() for b in grouped] == [
        b.tolist() for b in batches(lengths, 32, np.random.default_rng(1), group=True, window=10)
    ]  # and a function of the rng alone (a resumed epoch replays it)


def test_a_killed_distillation_resumes_from_its_checkpoint(tmp_path):
    ids, mask = _batch(n=32, length=8, seed=2)
    t = torch.nn.functional.normalize(torch.randn(32, 12), dim=1).numpy()
    split = Split(ids.numpy(), mask.numpy(), t)
    spec = {"name": "text_cnn", "kwargs": TINY["text_cnn"]}
    ckpt = tmp_path / "s.ckpt"

    def run(log, checkpoint=None):
        torch.manual_seed(0)
        return distill(
            build_text_model(spec, 50, 8, 12),
            split,
            split,
            Recipe(epochs=2, batch_size=8),
            0,
            log=log,
            checkpoint=checkpoint,
        )

    def killed_in_epoch_2(msg: str) -> None:
        if msg.startswith("epoch 2/2"):
            raise KeyboardInterrupt

    full = run(lambda m: None)
    with pytest.raises(KeyboardInterrupt):
        run(killed_in_epoch_2, ckpt)
    lines: list[str] = []
    resumed = run(lines.append, ckpt)
    assert lines[0].startswith("resuming after epoch 1")
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in (*full.history, *resumed.history)]
    assert strip[:2] == strip[2:]  # the same two epochs, the first replayed from the checkpoint


def test_a_trimmed_table_keeps_frequent_tokens_and_sends_the_rest_to_unk(tmp_path):
    ids = np.array([[101, 7, 7, 7, 9, 9, 11, 102], [101, 7, 9, 12, 102, 0, 0, 0]])
    mask = (ids != 0).astype(np.int64)
    split = Split(ids, mask, np.zeros((2, 4), np.float32))
    keep = kept_tokens(split, 120, rows=7, special_ids=(0, 100, 101, 102, 103))
    assert keep.tolist() == [0, 7, 9, 100, 101, 102, 103]  # specials + the two most frequent; 11 and 12 left out
    spec = {"name": "text_transformer", "kwargs": {**TINY["text_transformer"], "embed_dim": 4, "rows": len(keep)}}
    torch.manual_seed(0)
    model = build_text_model(spec, 120, 8, 12).eval()
    model.embed.keep_tokens(keep, 100)
    init_embedding_from_teacher(model, torch.randn(120, 16), keep)
    assert model.embed.table.num_embeddings == 7
    row = model.embed.remap
    assert row[7] != row[9] and row[11] == row[12] == row[100]  # unseen tokens share [UNK]'s row
    with torch.no_grad():
        a = model(torch.as_tensor([[101, 11, 102]]), torch.ones(1, 3, dtype=torch.int64))
        b = model(torch.as_tensor([[101, 100, 102]]), torch.ones(1, 3, dtype=torch.int64))
    assert torch.allclose(a, b)
    # the index map is saved with the weights: a rebuilt model embeds the same
    torch.save(model.state_dict(), tmp_path / "m.pt")
    again = build_text_model(spec, 120, 8, 12).eval()
    again.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    with torch.no_grad():
        assert torch.equal(again(torch.as_tensor([[101, 9, 12]]), torch.ones(1, 3, dtype=torch.int64)),
                           model(torch.as_tensor([[101, 9, 12]]), torch.ones(1, 3, dtype=torch.int64)))  # fmt: skip
    with pytest.raises(ModelError, match="no row beside"):
        kept_tokens(split, 120, rows=5, special_ids=(0, 100, 101, 102, 103))
    with pytest.raises(ModelError, match="fallback token id 55"):
        model.embed.keep_tokens(keep, 55)
