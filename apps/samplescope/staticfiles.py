"""Static files storage for `make run` (settings.local): WhiteNoise's compressed manifest storage,
with hashed names whether DEBUG is on or off.

Django's manifest storage links the plain names while DEBUG is on (HashedFilesMixin._url), so
WhiteNoise cannot tell them apart from files that may change and sends them with max-age=0: every
page reload asked again for the 1 MB plotly.js. With the hashed names it sends
`max-age=315360000, public, immutable`, as in production. `make run` collects static files before
serving (Makefile), so every name is in the manifest; one that is not (a file added since, with the
server still running on the old manifest) gets its plain name rather than an error page, DEBUG on
or off (`make run` runs with DEBUG off unless DJANGO_DEBUG=1).
"""
from django.contrib.staticfiles.storage import StaticFilesStorage
from whitenoise.storage import CompressedManifestStaticFilesStorage


class HashedCompressedManifestStaticFilesStorage(CompressedManifestStaticFilesStorage):
    def url(self, name, force=False):
        try:
            return super().url(name, force=True)
        except ValueError:  # not in the manifest
            return StaticFilesStorage.url(self, name)
