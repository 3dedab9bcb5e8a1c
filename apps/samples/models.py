from django.db import models


class SavedSearch(models.Model):
    """A search too long for a web address (a 1,000-character value, many filters): its parameters, stored once
    under a short key derived from them, so `/samples/?_q=<key>` shows it and can be shared."""

    key = models.CharField(max_length=32, primary_key=True, help_text="sha256 of the parameters, first 20 hex digits")
    params = models.JSONField(help_text="the search's URL parameters, [[name, value], ...] in order")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.key} ({len(self.params)} parameters)"
