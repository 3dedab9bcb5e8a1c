from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """Who did what, when, and what it cost: searches, fallbacks, predictions, registrations, KB edits."""

    class Action(models.TextChoices):
        SEARCH = "search", "Search"
        EXPORT = "export", "Search export"
        FALLBACK = "fallback", "Warehouse fallback"
        PREDICTION = "prediction", "Prediction"
        MODEL_REGISTRATION = "model_registration", "Model registration"
        MODEL_ALIAS = "model_alias", "Model alias move"
        BATCH = "batch", "Batch scoring"
        FLAG = "flag", "Flagged prediction"
        LINK = "link", "Entity linking"
        KB_EDIT = "kb_edit", "Knowledge-base edit"
        SUBSET_REFRESH = "subset_refresh", "Subset refresh"
        TOKEN_CREATE = "token_create", "API token created"
        TOKEN_REVOKE = "token_revoke", "API token revoked"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    target = models.CharField(max_length=255, blank=True, help_text="what was acted on: a query, a model, an entity")
    outcome = models.CharField(max_length=32, default="ok")
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.user} {self.action} {self.target}"
