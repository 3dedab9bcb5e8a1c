import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from django.core.management.base import BaseCommand, CommandError

from apps.modelhub.demo import demo_rows_load
from apps.modelhub.encoders import session_options_default
from apps.modelhub.runtime import loaded_model_get, predict, prediction_cache
from apps.modelhub.selectors import ModelNotFound, model_version_get


class Command(BaseCommand):
    help = (
        "Benchmark a model's predict path against a bare onnxruntime session on the same inputs, side by side "
        "in one run: single-input p50 latency and batch throughput. Inputs are distinct demo texts, so the "
        "app's prediction cache cannot help. Prints JSON (and writes it with --json PATH)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, help="registered model name")
        parser.add_argument("--model-version", dest="model_version", default=None, help="version (default: the production alias)")
        parser.add_argument("--n", type=int, default=500, help="number of distinct inputs")
        parser.add_argument("--batch-size", type=int, default=64, help="inputs per batch for the throughput part")
        parser.add_argument("--json", dest="json_path", default=None, help="also write the JSON to this path")

    def handle(self, *args, model, model_version, n, batch_size, json_path, **options):
        try:
            mv = model_version_get(name=model, version=model_version)
        except ModelNotFound as exc:
            raise CommandError(str(exc)) from exc
        texts, _, source = demo_rows_load(rows=n, seed=99)
        texts = list(dict.fromkeys(texts))[:n]
        if len(texts) < n:
            raise CommandError(f"only {len(texts)} distinct texts available from {source}")
        loaded = loaded_model_get(model_version=mv)
        raw = ort.InferenceSession(str(loaded.model_path), sess_options=session_options_default(),
                                   providers=["CPUExecutionProvider"])
        output_name = loaded.output_name

        def raw_run(batch: list[str]) -> np.ndarray:
            # The bare minimum to call the graph: the same input encoding, no caches, no bookkeeping.
            feeds, _ = loaded.feeds(batch)
            return raw.run([output_name], feeds)[0]

        def app_run(batch: list[str]):
            return predict(model_version=mv, texts=batch)

        for text in texts[:10]:  # warm both paths up
            raw_run([text])
            app_run([text])
        prediction_cache.clear()

        app_times, raw_times = [], []
        self.stdout.write(f"single inputs: {n} on {mv} ...")
        for index, text in enumerate(texts):
            # Alternate which goes first so neither path profits from warmer caches.
            order = (("app", app_run), ("raw", raw_run)) if index % 2 == 0 else (("raw", raw_run), ("app", app_run))
            for name, run in order:
                started = time.perf_counter()
                run([text])
                (app_times if name == "app" else raw_times).append((time.perf_counter() - started) * 1000)
        prediction_cache.clear()

        batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
        app_total = raw_total = 0.0
        self.stdout.write(f"batches: {len(batches)} of {batch_size} ...")
        for index, batch in enumerate(batches):
            for name in (("app", "raw") if index % 2 == 0 else ("raw", "app")):
                started = time.perf_counter()
                (app_run if name == "app" else raw_run)(batch)
                elapsed = time.perf_counter() - started
                if name == "app":
                    app_total += elapsed
                else:
                    raw_total += elapsed
        prediction_cache.clear()

        started = time.perf_counter()
        app_run([texts[0]])
        cached_ms_first = (time.perf_counter() - started) * 1000
        cached = []
        for _ in range(200):
            started = time.perf_counter()
            app_run([texts[0]])
            cached.append((time.perf_counter() - started) * 1000)

        result = {
            "model": f"{mv.name}@{mv.version}",
            "n": n,
            "app_single_p50_ms": round(statistics.median(app_times), 3),
            "raw_single_p50_ms": round(statistics.median(raw_times), 3),
            "app_batch_per_s": round(len(texts) / app_total, 1),
            "raw_batch_per_s": round(len(texts) / raw_total, 1),
            "batch_size": batch_size,
            "app_cached_single_p50_ms": round(statistics.median(cached), 3),
            "app_uncached_first_ms": round(cached_ms_first, 3),
            "ort_threads": {"intra": raw.get_session_options().intra_op_num_threads,
                            "inter": raw.get_session_options().inter_op_num_threads},
        }
        result["single_within_target"] = result["app_single_p50_ms"] <= result["raw_single_p50_ms"] * 1.1 + 1
        result["batch_within_target"] = result["app_batch_per_s"] >= result["raw_batch_per_s"] * 0.9
        text = json.dumps(result, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).write_text(text + "\n")
