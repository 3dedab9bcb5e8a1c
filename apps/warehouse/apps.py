from django.apps import AppConfig


class WarehouseConfig(AppConfig):
    name = "apps.warehouse"
    label = "warehouse"
