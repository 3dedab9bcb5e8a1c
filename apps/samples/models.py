from django.db import models
from django.utils import timezone


class SavedSearch(models.Model):
    """A search too long for a web address (a 1,000-character value, many filters): its parameters, stored once
    under a short key derived from them, so `/samples/?_q=<key>` shows it and can be shared."""

    key = models.CharField(max_length=32, primary_key=True, help_text="sha256 of the parameters, first 20 hex digits")
    params = models.JSONField(help_text="the search's URL parameters, [[name, value], ...] in order")
    created_at = models.DateTimeField(auto_now_add=True)
    # Refreshed at most once a day when `?_q=<key>` is opened (services.saved_search_touch); `prune_logs`
    # deletes searches unused for SAVED_SEARCH_KEEP_DAYS (services.saved_searches_prune).
    last_used_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.key} ({len(self.params)} parameters)"
