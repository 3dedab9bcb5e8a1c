import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.linking.selectors import kb_export_jsonl, kb_get
from apps.linking.services import NotFound


class Command(BaseCommand):
    help = "Export a KB's entities, aliases and mentions as JSONL (the format import_kb reads; no embeddings)."

    def add_arguments(self, parser):
        parser.add_argument("--model", default=None, help="KB name or name@version (default: the serving linker)")
        parser.add_argument("--out", default="-", help="output file (default: stdout)")

    def handle(self, *args, model, out, **options):
        try:
            kb = kb_get(name=model)
        except NotFound as exc:
            raise CommandError(str(exc)) from exc
        lines = list(kb_export_jsonl(kb=kb))
        body = "".join(line + "\n" for line in lines)
        if out == "-":
            sys.stdout.write(body)
        else:
            Path(out).write_text(body)
            self.stderr.write(f"wrote {len(lines)} entities of {kb.label} to {out}")
