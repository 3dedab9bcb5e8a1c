from django.conf import settings
from django.db import models


class ModelVersion(models.Model):
    """One registered, validated version of a model in the store (`<name>/<version>/`)."""

    class Kind(models.TextChoices):
        CLASSIFIER = "classifier", "Classifier"
        ENCODER = "encoder", "Encoder"
        ENTITY_LINKER = "entity_linker", "Entity linker"

    name = models.SlugField(max_length=100)
    version = models.CharField(max_length=50)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    uri = models.CharField(max_length=500, help_text="store URI of the version folder")
    checksums = models.JSONField(default=dict, help_text="file name → sha256, from card.json")
    card = models.JSONField(default=dict)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="modelhub_unique_name_version")]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def labels(self) -> list[str]:
        return list(self.card.get("labels") or [])

    @property
    def description(self) -> str:
        return self.card.get("description", "")

    @property
    def metrics(self) -> dict:
        return self.card.get("metrics") or {}

    @property
    def examples(self) -> list[str]:
        return list(self.card.get("examples") or [])

    @property
    def labelled_examples(self) -> list[dict]:
        """Hand-written examples with the label they should get ({"text", "label"}), when the card has them."""
        return [e for e in self.card.get("labelled_examples") or [] if isinstance(e, dict) and e.get("text")]

    def file_uri(self, filename: str) -> str:
        return f"{self.uri.rstrip('/')}/{filename}"


class ModelAlias(models.Model):
    """A movable pointer such as `production` or `candidate` → one version of a model."""

    name = models.SlugField(max_length=100)
    alias = models.SlugField(max_length=50)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name", "alias"]
        constraints = [models.UniqueConstraint(fields=["name", "alias"], name="modelhub_unique_alias")]

    def __str__(self) -> str:
        return f"{self.name}:{self.alias} → {self.model_version.version}"


class PredictionFlag(models.Model):
    """A prediction someone marked as wrong (Gradio-style flagging), kept for relabelling."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="flags")
    input_text = models.TextField()
    predicted_label = models.CharField(max_length=200)
    correct_label = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]


class BatchJob(models.Model):
    """A CSV scored by a Celery task in batches; `processed`/`total` drive the progress bar."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="batch_jobs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    original_name = models.CharField(max_length=255)
    text_column = models.CharField(max_length=200)
    input_path = models.CharField(max_length=500)
    output_path = models.CharField(max_length=500, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED, db_index=True)
    processed = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text="when a worker began scoring (for the ETA)")
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="the worker's last progress; the sweeper fails a running job silent too long"
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    @property
    def rows_per_second(self) -> float | None:
        """Scoring speed so far (None before the first batch is done)."""
        from django.utils import timezone

        if not self.started_at or not self.processed:
            return None
        end = self.finished_at or timezone.now()
        elapsed = max((end - self.started_at).total_seconds(), 1e-3)
        return self.processed / elapsed

    @property
    def eta_seconds(self) -> int | None:
        """Seconds left at the speed so far; None when unknown or done."""
        rate = self.rows_per_second
        if self.is_done or rate is None or self.total <= self.processed:
            return None
        return round((self.total - self.processed) / rate)

    @property
    def percent(self) -> int:
        return int(100 * self.processed / self.total) if self.total else (100 if self.is_done else 0)

    @property
    def is_done(self) -> bool:
        return self.state in {self.State.SUCCEEDED, self.State.FAILED}


class SharedInput(models.Model):
    """A text typed on the demo or compare page, stored so its results have a short URL (`?_in=<key>`) that can
    be reloaded, shared and reached with Back: the text itself (up to 100,000 characters, 200 compare lines)
    would not fit in a URL (gunicorn refuses request lines over 4,094 bytes). The key is the start of the
    text's sha256, so the same text always gets the same URL and is stored once."""

    key = models.CharField(max_length=24, primary_key=True)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key
