"""A real server: refuses to start with a missing, placeholder or weak secret or with DEBUG on; HTTPS only (redirect
and HSTS on by default); no demo login."""
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
# As Django's own check (security.W009, `check --deploy`), but refusing to start instead of warning: a short key
# or one of few distinct characters can be guessed, and it signs sessions, password resets and CSRF tokens.
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5
if (len(os.environ["DJANGO_SECRET_KEY"]) < SECRET_KEY_MIN_LENGTH
        or len(set(os.environ["DJANGO_SECRET_KEY"])) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or os.environ["DJANGO_SECRET_KEY"].startswith("django-insecure-")):
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY is too weak: it needs at least {SECRET_KEY_MIN_LENGTH} characters, "
        f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} of them different, e.g. "
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
# HTTPS (README, "Running it on a server"): TLS ends at the reverse proxy (required), which sets
# X-Forwarded-Proto. Plain HTTP is redirected and browsers are told to use HTTPS only for a year (the HSTS header
# goes out on HTTPS responses only, so a site not yet behind TLS is never pinned). DJANGO_SSL_REDIRECT=false and
# DJANGO_HSTS_SECONDS=0 turn them off; a first rollout may start with DJANGO_HSTS_SECONDS=3600.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the container health check speaks plain HTTP to gunicorn
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
WHITENOISE_USE_FINDERS = False  # collectstatic ran at image build
# The client's address for the login throttle: behind the proxy (deploy/nginx.conf, required), the address it
# appended to X-Forwarded-For (compose publishes the web port on the host's 127.0.0.1 only, for that proxy).
TRUST_X_FORWARDED_FOR = env_bool("DJANGO_TRUST_X_FORWARDED_FOR", True)
# `setup_demo` creates a superuser whose password is in the README: never on a server.
DEMO_USERS_ALLOWED = False
