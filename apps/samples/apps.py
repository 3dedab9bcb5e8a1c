from django.apps import AppConfig


class SamplesConfig(AppConfig):
    name = "apps.samples"
    label = "samples"
    verbose_name = "Sample search: the pipeline behind the page, the export and the API"
