from urllib.parse import urlencode

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from apps.search.query import SearchQuery


class Fallback(models.Model):
    """One query sent to the full dataset (Athena or the local Parquet files) for one fingerprint.

    Identical searches join the row in flight; `inflight_key` holds the fingerprint while the row is
    queued or running and is cleared when it finishes, so the unique index lets at most one live row
    exist per fingerprint even when two requests race.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        TIMED_OUT = "timed_out", "Timed out"
        REFUSED = "refused", "Refused"

    ACTIVE_STATES = (State.QUEUED, State.RUNNING)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="fallbacks"
    )
    user_name = models.CharField(max_length=150, blank=True,
                                 help_text="its creator's username when created (spend keeps it if the account is renamed or goes)")
    table = models.CharField(max_length=100)
    query = models.JSONField(help_text="SearchQuery.to_dict()")
    fingerprint = models.CharField(max_length=64, db_index=True)
    limit = models.PositiveIntegerField()
    backend = models.CharField(max_length=16)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED, db_index=True)
    inflight_key = models.CharField(max_length=64, null=True, blank=True, unique=True)
    error = models.TextField(blank=True)

    rows = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)
    row_count = models.PositiveIntegerField(default=0)
    bytes_estimate = models.BigIntegerField(null=True, blank=True, help_text="before sending, for the budget")
    bytes_scanned = models.BigIntegerField(null=True, blank=True)
    bytes_are_estimate = models.BooleanField(default=False, help_text="local backend: from Parquet metadata")
    estimated_cost_usd = models.DecimalField(max_digits=16, decimal_places=10, default=0)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=10, default=0)
    engine_query_id = models.CharField(max_length=128, blank=True)
    progress = models.FloatField(null=True, blank=True, help_text="0..1 where the engine reports it")
    simulated_latency_ms = models.PositiveIntegerField(
        default=0, help_text="local backend only: pad the run to this long (settings.WAREHOUSE_LOCAL_MIN_LATENCY_MS)"
    )

    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="who stopped it (its creator or staff); null when nobody did or that account is gone",
    )
    cancelled_by_name = models.CharField(max_length=150, blank=True,
                                         help_text="their username when they stopped it (kept if the account goes)")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["fingerprint", "state", "finished_at"]),
            models.Index(fields=["user", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"fallback #{self.pk} {self.table} {self.state}"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def query_text(self) -> str:
        """`text contains 'foo' AND lang = 'de' LIMIT 10`, for lists and the audit log."""
        try:
            return SearchQuery.from_dict(self.query).describe().split(": ", 1)[-1]
        except (KeyError, TypeError, ValueError):
            return self.fingerprint

    @property
    def querystring(self) -> str:
        """The search's URL parameters plus `fallback=<id>`: the search page merges this fallback's rows."""
        try:
            params = SearchQuery.from_dict(self.query).to_params()
        except (KeyError, TypeError, ValueError):
            return ""
        return urlencode(params + [("fallback", str(self.pk))])

    @property
    def elapsed_ms(self) -> int:
        from django.utils import timezone

        end = self.finished_at or timezone.now()
        return max(0, int((end - self.created_at).total_seconds() * 1000))


class FallbackRequest(models.Model):
    """One search that asked for a fallback (created it, joined it or reused it from the cache).

    Keeps the keys of the rows the search already had locally; the page merges the warehouse rows by
    running the same search again through apps.samples.pipeline, so no copy of a row is stored here.
    """

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        JOINED = "joined", "Joined a fallback in flight"
        CACHE = "cache", "Reused a cached result"
        REFUSED = "refused", "Refused"

    fallback = models.ForeignKey(Fallback, on_delete=models.CASCADE, related_name="requests")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    search_log = models.ForeignKey("search.SearchLog", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="fallback_requests")
    local_keys = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder,
                                  help_text="keys of the rows the search already had locally (not copies of them)")
    created_at = models.DateTimeField(auto_now_add=True)
    left_at = models.DateTimeField(null=True, blank=True,
                                   help_text="a joiner's cancel: they stopped waiting; the fallback runs on")

    class Meta:
        ordering = ["-created_at"]


class Export(models.Model):
    """One warehouse query that writes every row of the full dataset matching a search to the store: an Athena
    UNLOAD to S3, or a DuckDB COPY of the full Parquet files to a CSV file on the local backend.

    Priced, reserved and capped exactly like a fallback (the budget counts both: selectors._spent_usd); the
    field names that the spend ledger reads are the same as Fallback's."""

    State = Fallback.State
    ACTIVE_STATES = Fallback.ACTIVE_STATES

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="exports"
    )
    user_name = models.CharField(max_length=150, blank=True)
    table = models.CharField(max_length=100)
    query = models.JSONField(help_text="SearchQuery.to_dict() (its limit is ignored: every matching row)")
    fingerprint = models.CharField(max_length=64, db_index=True)
    backend = models.CharField(max_length=16)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED, db_index=True)
    error = models.TextField(blank=True)

    location = models.CharField(max_length=1024, blank=True,
                                help_text="where the rows are written: a file path (local) or an s3:// prefix (Athena)")
    row_count = models.BigIntegerField(null=True, blank=True, help_text="rows written (None: the engine does not say)")
    file_bytes = models.BigIntegerField(null=True, blank=True, help_text="size of what was written")
    bytes_estimate = models.BigIntegerField(null=True, blank=True, help_text="before sending, for the budget")
    bytes_scanned = models.BigIntegerField(null=True, blank=True)
    bytes_are_estimate = models.BooleanField(default=False, help_text="local backend: from Parquet metadata")
    estimated_cost_usd = models.DecimalField(max_digits=16, decimal_places=10, default=0)
    cost_usd = models.DecimalField(max_digits=16, decimal_places=10, default=0)
    engine_query_id = models.CharField(max_length=128, blank=True)
    progress = models.FloatField(null=True, blank=True, help_text="0..1 where the engine reports it")

    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    cancelled_by_name = models.CharField(max_length=150, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True,
                                      help_text="when its files were deleted (EXPORT_KEEP_DAYS after it finished)")

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"export #{self.pk} {self.table} {self.state}"

    @property
    def is_expired(self) -> bool:
        """Its files were deleted by retention (export_services.exports_prune): nothing left to download."""
        return self.expired_at is not None

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def query_text(self) -> str:
        """The search's filters, without its page limit (an export has none)."""
        try:
            text = SearchQuery.from_dict(self.query).describe().split(": ", 1)[-1]
        except (KeyError, TypeError, ValueError):
            return self.fingerprint
        return text.rsplit(" LIMIT ", 1)[0]

    @property
    def elapsed_ms(self) -> int:
        from django.utils import timezone

        end = self.finished_at or timezone.now()
        return max(0, int((end - self.created_at).total_seconds() * 1000))
