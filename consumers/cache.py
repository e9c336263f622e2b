"""Per-campaign work done once per process: compiled templates and the MIME skeleton.

A running campaign's content cannot change (the update query only touches drafts), so the
cache needs no invalidation beyond its size bound.
"""
import functools

from app.db import fetchall, fetchone, q
from app.mime import Attachment, Skeleton
from app.render import compile_campaign


@functools.lru_cache(maxsize=16)
def campaign(campaign_id: int) -> dict:
    return dict(fetchone(q.campaign_get, {"id": campaign_id}))


@functools.lru_cache(maxsize=16)
def compiled(campaign_id: int):
    return compile_campaign(campaign(campaign_id))


@functools.lru_cache(maxsize=8)
def skeleton(campaign_id: int) -> Skeleton:
    files = [Attachment(r["filename"], r["content_type"], bytes(r["content"]))
             for r in fetchall(q.attachment_contents, {"campaign_id": campaign_id})]
    return Skeleton.build(campaign(campaign_id), files)
