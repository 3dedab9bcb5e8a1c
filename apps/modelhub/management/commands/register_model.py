from django.core.management.base import BaseCommand, CommandError

from apps.modelhub.services import RegistrationRefused, model_register


class Command(BaseCommand):
    help = (
        "Register a model version folder (a store URI such as s3://bucket/models/name/3 or a local path holding "
        "model.onnx and card.json). The model is loaded in onnxruntime, its checksums, inputs and outputs are "
        "checked against the card and the card's examples are run; a refused version changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("uri", help="URI of the version folder <store>/<name>/<version>")
        parser.add_argument("--alias", action="append", default=[],
                            help="alias to move to this version once registered (repeatable), e.g. candidate")

    def handle(self, *args, uri, alias, **options):
        try:
            mv = model_register(uri=uri, user=None, aliases=tuple(alias))
        except RegistrationRefused as exc:
            raise CommandError(f"Refused: {exc}") from exc
        aliases = f" (aliases: {', '.join(alias)})" if alias else ""
        self.stdout.write(self.style.SUCCESS(f"Registered {mv.name} v{mv.version} [{mv.kind}]{aliases}"))
