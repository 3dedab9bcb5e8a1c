from django.contrib import admin

from .models import SearchLog


@admin.register(SearchLog)
class SearchLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "table", "limit", "local_rows", "elapsed_ms", "needed_fallback", "timed_out")
    list_filter = ("table", "needed_fallback", "timed_out")
    search_fields = ("fingerprint",)
    readonly_fields = [f.name for f in SearchLog._meta.fields]
