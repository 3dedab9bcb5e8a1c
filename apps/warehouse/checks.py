"""System check: the spend ledger's serialization needs SQLite transactions to start IMMEDIATE."""
from django.conf import settings
from django.core import checks


def ledger_database_problems(database: dict) -> list[checks.CheckMessage]:
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return []
    if str(database.get("OPTIONS", {}).get("transaction_mode", "")).upper() == "IMMEDIATE":
        return []
    return [checks.Error(
        "SQLite without OPTIONS['transaction_mode'] = 'IMMEDIATE': two fallback requests could both pass the "
        "budget check and overdraw it (apps/warehouse/README.md, 'Budget').",
        hint='Set DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE" (settings/base.py does).',
        id="warehouse.E001",
    )]


def ledger_database_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    return ledger_database_problems(settings.DATABASES["default"])
