"""Vector indexes over a KB's mention embeddings, behind one small interface.

`top_per_entity(query, entities=..., k=...)` answers "for each candidate entity, its k stored
mentions most similar to this query" (cosine; vectors are L2-normalised). Two implementations:

- `NumpyMentionIndex` (default, settings.LINKING_VECTOR_INDEX = "numpy"): exact search over one
  float32 matrix held in the web process, rows grouped by entity so a candidate's mentions are a
  contiguous slice. No server; fine up to a few hundred thousand mentions.
- `QdrantMentionIndex` ("qdrant"): qdrant-client. LINKING_QDRANT_PATH is a directory (local
  mode, embedded, one process at a time because of its file lock), ":memory:", or an
  http(s):// URL of a Qdrant server (the way to share one large index between many workers).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from django.conf import settings


class MentionIndex(ABC):
    kind = "abstract"

    def __init__(self, *, name: str, vectors: np.ndarray, mention_ids: np.ndarray, entity_ids: np.ndarray):
        self.name = name
        self.size = int(len(mention_ids))

    @abstractmethod
    def top_per_entity(
        self, query: np.ndarray, *, entities: Sequence[int], k: int
    ) -> dict[int, list[tuple[int, float]]]:
        """{entity id: [(mention id, cosine), ...] best first, at most k}; entities without mentions are left out."""

    def close(self) -> None:
        """Free what the index holds outside Python memory."""


class NumpyMentionIndex(MentionIndex):
    kind = "numpy"

    def __init__(self, *, name: str, vectors: np.ndarray, mention_ids: np.ndarray, entity_ids: np.ndarray):
        super().__init__(name=name, vectors=vectors, mention_ids=mention_ids, entity_ids=entity_ids)
        order = np.argsort(entity_ids, kind="stable")
        self.vectors = np.ascontiguousarray(vectors[order], dtype=np.float32)
        self.mention_ids = np.asarray(mention_ids)[order]
        sorted_entities = np.asarray(entity_ids)[order]
        self.slices: dict[int, tuple[int, int]] = {}
        if len(sorted_entities):
            uniques, starts, counts = np.unique(sorted_entities, return_index=True, return_counts=True)
            self.slices = {int(e): (int(s), int(s + c)) for e, s, c in zip(uniques, starts, counts)}

    def top_per_entity(self, query, *, entities, k):
        present = [(e, self.slices[e]) for e in entities if e in self.slices]
        if not present:
            return {}
        rows = np.concatenate([np.arange(lo, hi) for _, (lo, hi) in present])
        sims = self.vectors[rows] @ query.astype(np.float32, copy=False)
        out, offset = {}, 0
        for entity, (lo, hi) in present:
            part = sims[offset : offset + hi - lo]
            best = np.argsort(-part)[:k] if len(part) > k else np.argsort(-part)
            out[entity] = [(int(self.mention_ids[lo + i]), float(part[i])) for i in best]
            offset += hi - lo
        return out


class QdrantMentionIndex(MentionIndex):
    """One collection per KB revision; rebuilt when the KB changes (see linker.KBState)."""

    kind = "qdrant"
    _clients: dict[str, object] = {}
    _lock = threading.Lock()

    @classmethod
    def client(cls):
        from qdrant_client import QdrantClient

        location = settings.LINKING_QDRANT_PATH
        with cls._lock:
            if location not in cls._clients:
                if location == ":memory:":
                    cls._clients[location] = QdrantClient(location=":memory:")
                elif location.startswith(("http://", "https://")):
                    cls._clients[location] = QdrantClient(url=location)
                else:
                    cls._clients[location] = QdrantClient(path=location)
            return cls._clients[location]

    def __init__(self, *, name: str, vectors: np.ndarray, mention_ids: np.ndarray, entity_ids: np.ndarray):
        from qdrant_client import models

        super().__init__(name=name, vectors=vectors, mention_ids=mention_ids, entity_ids=entity_ids)
        self.models = models
        self.collection = name
        client = self.client()
        if client.collection_exists(name):
            client.delete_collection(name)
        client.create_collection(
            name, vectors_config=models.VectorParams(size=int(vectors.shape[1]), distance=models.Distance.COSINE)
        )
        for lo in range(0, len(mention_ids), 512):
            client.upsert(
                name,
                points=models.Batch(
                    ids=[int(i) for i in mention_ids[lo : lo + 512]],
                    vectors=vectors[lo : lo + 512].tolist(),
                    payloads=[{"entity": int(e)} for e in entity_ids[lo : lo + 512]],
                ),
            )

    def top_per_entity(self, query, *, entities, k):
        if not entities:
            return {}
        models = self.models
        result = self.client().query_points_groups(
            self.collection,
            query=query.tolist(),
            group_by="entity",
            group_size=k,
            limit=len(entities),
            query_filter=models.Filter(
                must=[models.FieldCondition(key="entity", match=models.MatchAny(any=[int(e) for e in entities]))]
            ),
        )
        return {int(g.id): [(int(p.id), float(p.score)) for p in g.hits] for g in result.groups}

    def close(self) -> None:
        try:
            self.client().delete_collection(self.collection)
        except Exception:  # the collection is gone already: nothing to free
            pass


INDEX_KINDS: dict[str, type[MentionIndex]] = {"numpy": NumpyMentionIndex, "qdrant": QdrantMentionIndex}


def mention_index_build(
    *, name: str, vectors: np.ndarray, mention_ids: np.ndarray, entity_ids: np.ndarray, kind: str | None = None
) -> MentionIndex:
    kind = kind or settings.LINKING_VECTOR_INDEX
    if kind not in INDEX_KINDS:
        raise ValueError(f"LINKING_VECTOR_INDEX must be one of {sorted(INDEX_KINDS)}, not {kind!r}")
    return INDEX_KINDS[kind](name=name, vectors=vectors, mention_ids=mention_ids, entity_ids=entity_ids)
