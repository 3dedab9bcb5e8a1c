from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A bearer token for API clients. Only its SHA-256 is stored; the prefix identifies it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    read_only = models.BooleanField(
        default=False, help_text="A read-only token may only GET: any other API call answers 403."
    )

    class Meta:
        ordering = ["-created_at"]
        # The role permissions (apps/accounts/roles.py); the groups holding them come from migration 0003.
        permissions = [
            ("search_samples", "Search samples and run warehouse fallbacks within budget"),
            ("manage_models", "Register model versions and move aliases"),
            ("edit_kb", "Create, change and delete entities, mentions and aliases in the serving KB"),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
