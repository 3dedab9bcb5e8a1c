import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.linking.evaluation import linker_evaluate
from apps.linking.linker import LinkerParams
from apps.linking.selectors import kb_get
from apps.linking.services import LinkingError, NotFound


class Command(BaseCommand):
    help = (
        "Evaluate an entity linker on a held-out JSONL file ({text, mentions: [{start, end, text, entity_id "
        "(null = NIL)}]} a line): in-KB accuracy and NIL precision/recall on the gold spans, end-to-end "
        "precision/recall/F1 with detection, and p50/p95 ms per text. --scorer prior gives the prior-only "
        "baseline. Prints JSON and stores it (the demo page shows the latest)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", default=None, help="KB name or name@version (default: the serving linker)")
        parser.add_argument("--data", required=True, help="held-out JSONL file")
        parser.add_argument("--json", dest="json_path", default=None, help="also write the JSON here")
        parser.add_argument("--scorer", choices=["linker", "prior"], default="linker")
        parser.add_argument(
            "--score", choices=["topk", "nearest"], default=None, help="default: settings.LINKING_SCORE"
        )
        parser.add_argument("--k", type=int, default=None, help="default: settings.LINKING_TOP_K")
        parser.add_argument("--prior-weight", type=float, default=None)
        parser.add_argument("--nil-threshold", type=float, default=None)
        parser.add_argument("--no-save", action="store_true", help="do not store the run")

    def handle(self, *args, model, data, json_path, scorer, score, k, prior_weight, nil_threshold, no_save, **options):
        path = Path(data)
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        try:
            kb = kb_get(name=model)
            params = LinkerParams.from_settings(
                scorer=scorer, score=score, top_k=k, prior_weight=prior_weight, nil_threshold=nil_threshold
            )
            self.stdout.write(f"evaluating {kb.label} ({scorer}) on {path}")
            metrics = linker_evaluate(kb=kb, path=path, params=params, save=not no_save, progress=self.stdout.write)
        except (NotFound, LinkingError) as exc:
            raise CommandError(str(exc)) from exc
        text = json.dumps(metrics, indent=2)
        self.stdout.write(text)
        if json_path:
            Path(json_path).write_text(text + "\n")
