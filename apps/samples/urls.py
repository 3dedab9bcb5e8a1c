from django.urls import path

from . import views

app_name = "samples"
urlpatterns = [
    path("", views.search_page, name="page"),
    path("facets/", views.search_facets_view, name="facets"),
    path("<str:table>/<str:key>.json", views.row_page, {"as_json": True}, name="row-json"),
    path("<str:table>/<str:key>/", views.row_page, name="row"),
]
