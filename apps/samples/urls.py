from django.urls import path

from . import views

app_name = "samples"
urlpatterns = [
    path("", views.search_page, name="page"),
    path("facets/", views.search_facets_view, name="facets"),
]
