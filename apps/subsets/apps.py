from django.apps import AppConfig


class SubsetsConfig(AppConfig):
    name = "apps.subsets"
    label = "subsets"
    verbose_name = "Subset life"
