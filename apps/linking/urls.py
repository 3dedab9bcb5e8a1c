from django.urls import path

from . import views

app_name = "linking"
urlpatterns = [
    path("", views.page, name="page"),
    path("kb/<str:model>/", views.kb_entities, name="kb"),
    path("kb/<str:model>/correct/", views.mention_correct, name="correct"),
    path("kb/<str:model>/entities/<str:key>/", views.entity_detail, name="entity"),
    path("kb/<str:model>/entities/<str:key>/delete/", views.entity_delete, name="entity-delete"),
    path("kb/<str:model>/deletions/<int:deletion_id>/restore/", views.entity_restore, name="entity-restore"),
    path("kb/<str:model>/entities/<str:key>/mentions/", views.mention_add, name="mention-add"),
    path("kb/<str:model>/entities/<str:key>/aliases/", views.alias_add, name="alias-add"),
]
