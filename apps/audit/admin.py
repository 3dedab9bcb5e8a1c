from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is written by the app, never edited by hand."""

    # `actor`: the name stored with the event, not the user's current one (renamed and deleted users included)
    list_display = ["created_at", "actor", "action", "target", "outcome", "cost_usd"]
    list_filter = ["action", "outcome", "created_at"]
    search_fields = ["target", "actor_name"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
