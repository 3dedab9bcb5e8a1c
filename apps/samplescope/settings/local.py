"""`make run` on a developer's machine."""
from .base import *  # noqa: F401,F403
from .base import env_bool

# Off by default, as on a server: a mistyped URL or a failing view shows the app's own 404 and 500 pages
# (templates/404.html, 500.html), not Django's debug pages (the 404 one lists every URL pattern).
# `DJANGO_DEBUG=1 make run` opts in. Static files are served by WhiteNoise from the collected files either way.
DEBUG = env_bool("DJANGO_DEBUG", False)

# `make run` collects static files first (Makefile), so they are served compressed (gzip, and Brotli
# when available) under content-hashed names that browsers may cache for ten years (immutable): hashed
# even with DEBUG on, which Django's own manifest storage does not do (apps/samplescope/staticfiles.py).
STORAGES = {**STORAGES, "staticfiles": {  # noqa: F405
    "BACKEND": "apps.samplescope.staticfiles.HashedCompressedManifestStaticFilesStorage"}}
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", False)
