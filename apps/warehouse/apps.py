from django.apps import AppConfig
from django.core import checks

from .checks import ledger_database_check


class WarehouseConfig(AppConfig):
    name = "apps.warehouse"
    label = "warehouse"

    def ready(self) -> None:
        checks.register(ledger_database_check)
