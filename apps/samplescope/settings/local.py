"""`make run` on a developer's machine."""
from .base import *  # noqa: F401,F403
from .base import env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)

# `make run` collects static files first (Makefile), so they are served compressed (gzip, and Brotli
# when available) under content-hashed names that browsers may cache for a year.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}  # noqa: F405
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", False)
