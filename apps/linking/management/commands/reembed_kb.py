from django.core.management.base import BaseCommand, CommandError

from apps.linking.detection import CONTEXT_STYLES
from apps.linking.selectors import kb_get
from apps.linking.services import NotFound, kb_reembed


class Command(BaseCommand):
    help = (
        "Embed every stored mention (and entity description) of a KB again: after switching its encoder "
        "or its context style (sentence, marked, masked, window). One transaction; linking sees it at once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", default=None, help="KB name or name@version (default: the serving linker)")
        parser.add_argument("--context-style", choices=CONTEXT_STYLES, default=None)

    def handle(self, *args, model, context_style, **options):
        try:
            kb = kb_get(name=model)
        except NotFound as exc:
            raise CommandError(str(exc)) from exc
        count = kb_reembed(user=None, kb=kb, context_style=context_style, stdout=self.stdout)
        kb.refresh_from_db()
        self.stdout.write(
            f"re-embedded {count} mentions of {kb.label} (context {kb.context_style}, revision {kb.revision})"
        )
