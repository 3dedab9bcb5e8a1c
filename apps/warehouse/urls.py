from django.urls import path

from . import views

app_name = "warehouse"
urlpatterns = [
    path("", views.fallback_list_page, name="list"),
    path("<int:fallback_id>/", views.fallback_detail, name="detail"),
    path("<int:fallback_id>/cancel/", views.fallback_cancel_view, name="cancel"),
]
