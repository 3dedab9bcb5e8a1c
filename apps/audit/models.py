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
        LOGIN_FAILED = "login_failed", "Failed login"
        LOGIN_LOCKED_OUT = "login_locked_out", "Login locked out"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    # The actor's username when the event was written: renaming or deleting the user leaves history as it was.
    # Empty for system events (no user).
    actor_name = models.CharField(max_length=150, blank=True, db_index=True)
    action = models.CharField(max_length=32, choices=Action.choices, db_index=True)
    target = models.CharField(max_length=255, blank=True, help_text="what was acted on: a query, a model, an entity")
    outcome = models.CharField(max_length=32, default="ok")
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.target}"

    @property
    def actor(self) -> str:
        """Who did it, as they were called then; "(system)" for events without a user, "(anonymous)" for
        failed logins (the username tried is the target: it is a claim, not an actor)."""
        if self.actor_name:
            return self.actor_name
        return "(anonymous)" if self.action in (self.Action.LOGIN_FAILED, self.Action.LOGIN_LOCKED_OUT) else "(system)"
