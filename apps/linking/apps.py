from django.apps import AppConfig


class LinkingConfig(AppConfig):
    name = "apps.linking"
    label = "linking"
