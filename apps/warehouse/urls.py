from django.urls import path

from . import views, views_export

app_name = "warehouse"
urlpatterns = [
    path("", views.fallback_list_page, name="list"),
    path("<int:fallback_id>/", views.fallback_detail, name="detail"),
    path("<int:fallback_id>/cancel/", views.fallback_cancel_view, name="cancel"),
    path("exports/", views_export.export_list_page, name="exports"),
    path("exports/new/", views_export.export_new, name="export-new"),
    path("exports/start/", views_export.export_start_view, name="export-start"),
    path("exports/local.csv", views_export.local_matches_csv, name="export-local"),
    path("exports/<int:export_id>/", views_export.export_detail, name="export-detail"),
    path("exports/<int:export_id>/cancel/", views_export.export_cancel_view, name="export-cancel"),
    path("exports/<int:export_id>/download/", views_export.export_download, name="export-download"),
]
