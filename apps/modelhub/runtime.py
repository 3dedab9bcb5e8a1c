"""Running registered models: onnxruntime sessions kept in a bounded LRU per process, the two
input families (raw strings, tokenized), and a small LRU of recent predictions.

Input families are found by inspecting the ONNX graph, not trusted from the card:
- raw strings: one `tensor(string)` input (skl2onnx TF-IDF pipelines);
- tokenized: `input_ids` + `attention_mask` (+ `token_type_ids`) built with `tokenizers`.
Outputs: `probabilities` (skl2onnx with zipmap off, or our combined graphs), or `logits`
turned into probabilities with a softmax here.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from django.conf import settings

from .encoders import session_options_default, tokenizer_load

FAMILY_TEXT = "text"
FAMILY_TOKENS = "tokens"
DEFAULT_MAX_CHARS = 10_000


class ModelRuntimeError(Exception):
    """The ONNX file cannot serve as the card describes (wrong inputs, outputs or labels)."""


class PredictionInputError(ValueError):
    """The caller's input cannot be scored (empty text, nothing given): shown to users as is."""


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def input_family(session: ort.InferenceSession) -> str:
    inputs = session.get_inputs()
    names = {i.name for i in inputs}
    if {"input_ids", "attention_mask"} <= names and all(i.type == "tensor(int64)" for i in inputs):
        return FAMILY_TOKENS
    if len(inputs) == 1 and inputs[0].type == "tensor(string)":
        return FAMILY_TEXT
    described = ", ".join(f"{i.name}: {i.type}" for i in inputs)
    raise ModelRuntimeError(
        f"unsupported model inputs ({described}): expected one string tensor, or input_ids + attention_mask"
    )


@dataclass
class LoadedModel:
    """One onnxruntime session plus what is needed to feed it and read its output."""

    name: str
    version: str
    card: dict
    model_path: Path
    tokenizer_path: Path | None = None
    session: ort.InferenceSession = field(init=False)
    family: str = field(init=False)

    def __post_init__(self) -> None:
        try:
            self.session = ort.InferenceSession(
                str(self.model_path), sess_options=session_options_default(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelRuntimeError(f"onnxruntime cannot load model.onnx: {exc}") from exc
        self.family = input_family(self.session)
        card_input = self.card.get("input") or {}
        self.max_length = int(card_input.get("max_length") or 128)
        self.max_chars = int(card_input.get("max_chars") or DEFAULT_MAX_CHARS)
        self.input_names = {i.name for i in self.session.get_inputs()}
        if self.family == FAMILY_TOKENS:
            if self.tokenizer_path is None:
                raise ModelRuntimeError("the model takes token ids but the version has no tokenizer.json")
            self.tokenizer = tokenizer_load(tokenizer_path=self.tokenizer_path, max_length=self.max_length)
        else:
            self.text_input = self.session.get_inputs()[0]
        self.output_name, self.output_is_logits = self._pick_output()

    def _pick_output(self) -> tuple[str, bool]:
        outputs = {o.name: o for o in self.session.get_outputs()}
        if self.card.get("kind") == "encoder":
            return next(iter(outputs)), False
        for name in ("probabilities", "output_probability", "probs"):
            if name in outputs and outputs[name].type == "tensor(float)":
                return name, False
        if "logits" in outputs:
            return "logits", True
        described = ", ".join(f"{o.name}: {o.type}" for o in outputs.values())
        raise ModelRuntimeError(
            f"no probabilities output ({described}): export with zipmap off, or name the output "
            "'probabilities' or 'logits'"
        )

    def feeds(self, texts: list[str]) -> tuple[dict[str, np.ndarray], list[bool]]:
        """onnxruntime inputs for `texts`, and which texts were cut to the model's limit."""
        if self.family == FAMILY_TEXT:
            truncated = [len(t) > self.max_chars for t in texts]
            array = np.array([t[: self.max_chars] for t in texts], dtype=object)
            rank = len(self.text_input.shape or [None, 1])
            return {self.text_input.name: array.reshape(-1, 1) if rank == 2 else array}, truncated
        encodings = self.tokenizer.encode_batch(texts)
        truncated = [bool(e.overflowing) for e in encodings]
        feeds = {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
        }
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        return feeds, truncated

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        (output,) = self.session.run([self.output_name], feeds)
        output = np.asarray(output, dtype=np.float32)
        return softmax(output) if self.output_is_logits else output

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        feeds, _ = self.feeds(texts)
        return self.run(feeds)


class LRU:
    """A small thread-safe least-recently-used map."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def keys(self) -> list:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


session_cache = LRU(settings.MODEL_SESSION_CACHE_SIZE)
prediction_cache = LRU(settings.PREDICTION_CACHE_SIZE)
_load_lock = threading.Lock()


def loaded_model_get(*, model_version) -> LoadedModel:
    """The process-wide session for a registered version, loading it (and fetching its files) once."""
    key = (model_version.name, model_version.version)
    loaded = session_cache.get(key)
    if loaded is not None:
        return loaded
    with _load_lock:
        loaded = session_cache.get(key)
        if loaded is None:
            loaded = loaded_model_from_files(
                name=model_version.name, version=model_version.version, uri=model_version.uri,
                card=model_version.card,
            )
            session_cache.put(key, loaded)
    return loaded


def loaded_model_from_files(*, name: str, version: str, uri: str, card: dict) -> LoadedModel:
    from .fetch import model_file_fetch
    from .store import uri_join

    checksums = card.get("files") or {}
    model_path = model_file_fetch(uri=uri_join(uri, "model.onnx"), sha256=checksums.get("model.onnx"))
    tokenizer_path = None
    if "tokenizer.json" in checksums:
        tokenizer_path = model_file_fetch(uri=uri_join(uri, "tokenizer.json"), sha256=checksums["tokenizer.json"])
    return LoadedModel(name=name, version=version, card=card, model_path=model_path, tokenizer_path=tokenizer_path)


@dataclass
class Prediction:
    label: str
    scores: dict[str, float]
    truncated: bool = False
    cached: bool = False

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        return sorted(self.scores.items(), key=lambda item: item[1], reverse=True)[:k]


@dataclass
class PredictionBatch:
    model: str
    version: str
    predictions: list[Prediction]
    latency_ms: float

    @property
    def any_truncated(self) -> bool:
        return any(p.truncated for p in self.predictions)


def texts_clean(texts: list[str]) -> list[str]:
    if not texts:
        raise PredictionInputError("Give at least one text to score.")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            where = "The text" if len(texts) == 1 else f"Text #{index + 1}"
            raise PredictionInputError(f"{where} is empty: type something to score.")
    return list(texts)


def text_digest(text: str) -> bytes:
    """The prediction cache's key for a text: 32 bytes, whatever the text's length (a cache of full
    texts would hold up to PREDICTION_CACHE_SIZE × the longest accepted input)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def predict(*, model_version, texts: list[str], use_cache: bool = True) -> PredictionBatch:
    """Scores `texts` as one onnxruntime batch; repeated inputs come from the prediction cache."""
    texts = texts_clean(texts)
    loaded = loaded_model_get(model_version=model_version)
    # Latency counts from here: loading a model happens once per process and is not inference.
    started = time.perf_counter()
    labels = model_version.labels
    name, version = loaded.name, loaded.version
    # Each entry: (probabilities as a list, truncated, cached); python lists make building the
    # per-label score dicts cheap, which matters for big batches.
    rows: list[tuple[list[float], bool, bool] | None] = [None] * len(texts)
    if use_cache:
        for index, text in enumerate(texts):
            hit = prediction_cache.get((name, version, text_digest(text)))
            if hit is not None:
                rows[index] = (hit[0], hit[1], True)
    missing = [i for i, row in enumerate(rows) if row is None] if use_cache else list(range(len(texts)))
    if missing:
        feeds, cut = loaded.feeds([texts[i] for i in missing] if len(missing) < len(texts) else texts)
        probabilities = loaded.run(feeds).tolist()
        for position, index in enumerate(missing):
            rows[index] = (probabilities[position], cut[position], False)
            if use_cache:
                prediction_cache.put((name, version, text_digest(texts[index])),
                                     (probabilities[position], cut[position]))
    predictions = []
    for values, was_cut, was_cached in rows:
        best = max(range(len(values)), key=values.__getitem__)
        predictions.append(Prediction(label=labels[best], scores=dict(zip(labels, values)),
                                      truncated=was_cut, cached=was_cached))
    return PredictionBatch(
        model=name, version=version, predictions=predictions, latency_ms=(time.perf_counter() - started) * 1000,
    )
