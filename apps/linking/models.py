"""An entity-linking model version is a knowledge base: entities, their aliases and the
mentions (context sentences) that describe them, each mention embedded by the KB's encoder.

Nothing is trained: linking compares a new mention with the stored ones, so every edit
takes effect on the next request. `KnowledgeBase.revision` is bumped in every edit
transaction; each process rebuilds its in-memory index when it sees a new revision.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.db import models


class KnowledgeBase(models.Model):
    name = models.SlugField(max_length=64, help_text="the entity-linking model's name, e.g. demo-kb")
    version = models.CharField(max_length=32, default="1")
    description = models.TextField(blank=True)
    encoder_name = models.CharField(max_length=64, default="minilm-l6", help_text="registered encoder (modelhub)")
    context_style = models.CharField(
        max_length=16, default="sentence", help_text="how a mention is put in context before embedding (detection.py)"
    )
    is_serving = models.BooleanField(default=False, help_text="the linker used when a request names none")
    revision = models.PositiveIntegerField(default=0, help_text="bumped by every edit; invalidates in-memory indexes")
    examples = models.JSONField(default=list, blank=True, help_text="example sentences for the demo page")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="linking_kb_name_version")]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def label(self) -> str:
        return str(self)


class Entity(models.Model):
    class Type(models.TextChoices):
        PERSON = "person", "Person"
        PLACE = "place", "Place"
        ORGANIZATION = "organization", "Organization"
        PRODUCT = "product", "Product"
        OTHER = "other", "Other"

    kb = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="entities")
    key = models.SlugField(max_length=128, help_text="the entity's id inside its KB, e.g. paris_france")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.OTHER)
    description = models.TextField(blank=True)
    url = models.URLField(max_length=500, blank=True)
    # Sum of the entity's mention embeddings (float32 bytes), kept in step by every mention edit,
    # so popular aliases can be pre-ranked with one dot product per candidate.
    aggregate = models.BinaryField(null=True, blank=True)
    # Embedding of "name: description" (the entity's card): a second opinion next to its mentions,
    # worth as much as them on the demo KB (see README, tune_linker).
    profile = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "key"]
        constraints = [models.UniqueConstraint(fields=["kb", "key"], name="linking_entity_kb_key")]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"

    def aggregate_vector(self) -> np.ndarray | None:
        return None if self.aggregate is None else np.frombuffer(bytes(self.aggregate), dtype=np.float32)


class Alias(models.Model):
    kb = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="aliases")
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="aliases")
    text = models.CharField(max_length=200)
    norm = models.CharField(max_length=200, db_index=True, help_text="lower-cased text, for matching")

    class Meta:
        ordering = ["entity", "id"]
        constraints = [models.UniqueConstraint(fields=["entity", "norm"], name="linking_alias_entity_norm")]

    def __str__(self) -> str:
        return self.text


class Mention(models.Model):
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="mentions")
    text = models.TextField(help_text="the context sentence")
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField(help_text="exclusive")
    embedding = models.BinaryField(help_text="float32 bytes from the KB's encoder, of the mention in context")
    pinned = models.BooleanField(
        default=False,
        help_text="a correction: a mention read in (nearly) this very context links to this entity, whatever the scores",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["entity", "id"]

    def __str__(self) -> str:
        return self.surface

    @property
    def surface(self) -> str:
        return self.text[self.start : self.end]

    @property
    def before(self) -> str:
        return self.text[: self.start]

    @property
    def after(self) -> str:
        return self.text[self.end :]


class EvaluationRun(models.Model):
    kb = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="evaluations")
    scorer = models.CharField(max_length=32, help_text="linker or prior (the prior-only baseline)")
    data_path = models.CharField(max_length=500)
    kb_revision = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kb} {self.scorer} {self.created_at:%Y-%m-%d %H:%M}"


class EntityDeletion(models.Model):
    """A deleted entity as it was (fields, aliases, mentions with their embeddings), so the delete can be undone
    from the KB's history: `entity_restore` puts it back without embedding anything again."""

    kb = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="deletions")
    key = models.SlugField(max_length=128)
    name = models.CharField(max_length=200)
    mention_count = models.PositiveIntegerField(default=0)
    snapshot = models.JSONField(help_text="the entity, its aliases and mentions; embeddings as base64 float32 bytes")
    kb_revision = models.PositiveIntegerField(help_text="the KB's revision once the delete was made")
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deleted_at = models.DateTimeField(auto_now_add=True, db_index=True)
    restored_at = models.DateTimeField(null=True, blank=True)
    restored_revision = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-deleted_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.kb} −{self.key}"
