from django.contrib import admin

from .models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "read_only", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at", "read_only"]
    search_fields = ["prefix", "user__username", "name"]
    readonly_fields = ["prefix", "token_hash", "created_at", "last_used_at"]
