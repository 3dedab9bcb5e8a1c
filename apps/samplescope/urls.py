from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path

from apps.core import views as core_views

from .api import api


def _api_urls():
    """The API answers 401 itself, so the login-redirect middleware lets it through."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        pattern.callback = login_not_required(pattern.callback)
    return patterns, app_name, namespace


urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("status/", core_views.status_banner, name="status-banner"),
    path("dashboard/", include("apps.dashboard.urls")),
    path("accounts/", include("apps.accounts.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", _api_urls()),
    path("samples/", include("apps.samples.urls")),
    path("fallbacks/", include("apps.warehouse.urls")),
    path("models/", include("apps.modelhub.urls")),
    path("linking/", include("apps.linking.urls")),
]
