from django.core.management.base import BaseCommand

from apps.modelhub.demo import DEMO_SEED, MINILM_TRAIN_ROWS, TFIDF_TRAIN_ROWS, demo_models_build, demo_models_present


class Command(BaseCommand):
    help = (
        "Train, export to ONNX, publish to MODEL_STORE_URI and register the demo models: tfidf-logreg v1 "
        "(production) and v2 (candidate), minilm-topic v1 (MiniLM encoder + head in one graph) and the "
        "minilm-l6 encoder. Reads text → label from the demo dataset's Parquet files (generated when absent). "
        "Skips when they are registered unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="rebuild and re-register even if present")
        parser.add_argument("--rows", type=int, default=TFIDF_TRAIN_ROWS, help="rows sampled for TF-IDF (train + held out)")
        parser.add_argument("--minilm-rows", type=int, default=MINILM_TRAIN_ROWS,
                            help="rows encoded with MiniLM for the head (train + held out); encoding is the slow part")
        parser.add_argument("--seed", type=int, default=DEMO_SEED, help="random seed (same seed, same models)")
        parser.add_argument("--store", default=None, help="store URI inside settings.MODEL_STORE_URI (the default; registration reads nothing outside it)")

    def handle(self, *args, force, rows, minilm_rows, seed, store, **options):
        if demo_models_present() and not force:
            self.stdout.write("Demo models are already registered (use --force to rebuild).")
            return
        built = demo_models_build(stdout=self.stdout, force=force, store_uri=store, tfidf_rows=rows, minilm_rows=minilm_rows,
                                  seed=seed)
        for key, uri in built.items():
            self.stdout.write(f"{key}: {uri}")
