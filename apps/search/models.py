from django.conf import settings
from django.db import models


class SearchLog(models.Model):
    """One search as it ran: for the dashboard; a warehouse fallback request points at the search that made it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="search_logs"
    )
    table = models.CharField(max_length=128)
    query = models.JSONField(help_text="SearchQuery.to_dict()")
    fingerprint = models.CharField(max_length=64, db_index=True)
    limit = models.PositiveIntegerField()
    local_rows = models.PositiveIntegerField(default=0, help_text="rows answered locally: subset + learned")
    source_counts = models.JSONField(default=dict, blank=True, help_text="rows per source when the page rendered")
    elapsed_ms = models.FloatField(default=0.0)
    needed_fallback = models.BooleanField(default=False)
    timed_out = models.BooleanField(default=False)
    plan = models.JSONField(default=dict, blank=True,
                            help_text="how it was answered: {subset, learned}, each {kind, reason, candidates, read}")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.user} {self.table} {self.local_rows}/{self.limit}"
