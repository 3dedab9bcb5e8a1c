from django.urls import path

from . import views

app_name = "modelhub"
urlpatterns = [
    path("", views.model_list, name="list"),
    path("register/", views.model_register_view, name="register"),
    path("score-search/", views.score_search, name="score-search"),
    path("batch/<int:job_id>/", views.batch_detail, name="batch-detail"),
    path("batch/<int:job_id>/download/", views.batch_download, name="batch-download"),
    path("<slug:name>/", views.model_detail, name="detail"),
    path("<slug:name>/compare/", views.model_compare, name="compare"),
    path("<slug:name>/flag/", views.flag_create, name="flag"),
    path("<slug:name>/flags/", views.flag_list_view, name="flags"),
    path("<slug:name>/batch/", views.batch_page, name="batch"),
    path("<slug:name>/batch/preview/", views.batch_preview, name="batch-preview"),
    path("<slug:name>/alias/", views.alias_move_view, name="alias"),
]
