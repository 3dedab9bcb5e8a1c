"""A real server: refuses to start with a missing secret or with DEBUG on."""
import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F401,F403
from .base import env_bool, env_int

# The placeholder in deploy/env.example and the local default: a copied example must not reach a server.
PLACEHOLDER_SECRET_KEYS = {"change-me-to-a-long-random-string", "insecure-local-development-key-change-me"}

if not os.environ.get("DJANGO_SECRET_KEY"):
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production.")
if os.environ["DJANGO_SECRET_KEY"] in PLACEHOLDER_SECRET_KEYS or "change-me" in os.environ["DJANGO_SECRET_KEY"]:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is the placeholder from deploy/env.example: set a long random value, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'")
if env_bool("DJANGO_DEBUG", False):
    raise ImproperlyConfigured("DJANGO_DEBUG must be off in production.")
DEBUG = False

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HTTPS (README, "Running it on a server"): TLS ends at the reverse proxy, which sets X-Forwarded-Proto.
# Turn these on once the site is served over HTTPS only; HSTS is sticky in browsers, so start small.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the container health check speaks plain HTTP to gunicorn
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
WHITENOISE_USE_FINDERS = False  # collectstatic ran at image build
