from django.contrib import admin

from .models import SubsetRefresh


@admin.register(SubsetRefresh)
class SubsetRefreshAdmin(admin.ModelAdmin):
    list_display = ("started_at", "table", "backend", "method", "fraction", "state", "rows", "duration_ms", "cost_usd")
    list_filter = ("state", "backend", "table")
    readonly_fields = [f.name for f in SubsetRefresh._meta.fields]
