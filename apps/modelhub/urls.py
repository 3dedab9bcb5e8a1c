from django.urls import path

app_name = "modelhub"
urlpatterns: list = []
