from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.linking.services import LinkingError, kb_get_or_create, kb_import_jsonl


class Command(BaseCommand):
    help = (
        "Import entities from a JSONL file (one {id, name, aliases, type, description, url, mentions: "
        "[{text, start, end}]} a line) into a KB, embedding every mention. All or nothing: one bad line "
        "and nothing is written. Creates the KB if needed."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the JSONL file")
        parser.add_argument("--model", required=True, help="KB name (an entity-linking model), e.g. demo-kb")
        parser.add_argument("--kb-version", dest="kb_version", default="1", help="KB version (default 1)")
        parser.add_argument("--replace", action="store_true", help="delete the KB's entities first")
        parser.add_argument("--serving", action="store_true", help="make this KB the one used when none is named")

    def handle(self, *args, path, model, kb_version, replace, serving, **options):
        source = Path(path)
        if not source.is_file():
            raise CommandError(f"{source} is not a file")
        kb = kb_get_or_create(name=model, version=kb_version, serving=serving)
        try:
            count = kb_import_jsonl(
                user=None,
                kb=kb,
                lines=source.read_text().splitlines(),
                replace=replace,
                stdout=self.stdout,
                source=source.name,
            )
        except LinkingError as exc:
            raise CommandError(f"nothing imported: {exc}") from exc
        kb.refresh_from_db()
        self.stdout.write(f"imported {count} entities into {kb.label} (revision {kb.revision})")
