"""`make run` on a developer's machine."""
from .base import *  # noqa: F401,F403
from .base import env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)

# `make run` collects static files first (Makefile), so they are served compressed (gzip, and Brotli
# when available) under content-hashed names that browsers may cache for ten years (immutable): hashed
# even with DEBUG on, which Django's own manifest storage does not do (apps/samplescope/staticfiles.py).
STORAGES = {**STORAGES, "staticfiles": {  # noqa: F405
    "BACKEND": "apps.samplescope.staticfiles.HashedCompressedManifestStaticFilesStorage"}}
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", False)
