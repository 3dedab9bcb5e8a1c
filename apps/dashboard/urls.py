from django.urls import path

from . import views

# No app_name: the nav and other apps reverse the page as plain "dashboard".
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
]
