"""Knowledge tags (Dify's Tag / TagBinding, type "knowledge"), on the write side.

A Tag aggregate per tag holds its name and the datasets bound to it. Names are unique per
workspace: a TagName aggregate, whose id is derived from (workspace, type, name) as account
ids are from e-mails, is claimed by the one tag holding that name. Two concurrent creates
of one name both append version 1 of the same TagName; the store lets one through and the
other command decides again and is rejected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

from commands.aggregate import Aggregate, Context, NameClaim
from commands.knowledge.aggregates import visible_dataset
from commands.registry import command_handlers
from commands.unit_of_work import UnitOfWork
from schemas.errors import BadRequest, TagNameDuplicate, TagNotFound
from schemas.knowledge import commands as cmd
from schemas.knowledge import events as ev
from schemas.knowledge.naming import TAG_TYPE, tag_name_id


class TagName(NameClaim):
    duplicate = TagNameDuplicate

    def claimed(self, holder: UUID) -> ev.TagNameClaimed:
        return ev.TagNameClaimed(tag_id=holder)

    def released(self, holder: UUID) -> ev.TagNameReleased:
        return ev.TagNameReleased(tag_id=holder)

    def apply_TagNameClaimed(self, p: ev.TagNameClaimed) -> None:
        self.holder = p.tag_id

    def apply_TagNameReleased(self, p: ev.TagNameReleased) -> None:
        self.holder = None


class Tag(Aggregate):

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.deleted = False
        self.name = ""
        self.tag_type = TAG_TYPE
        self.targets: set[UUID] = set()

    def apply_TagCreated(self, p: ev.TagCreated) -> None:
        self.name, self.tag_type = p.name, p.type

    def apply_TagRenamed(self, p: ev.TagRenamed) -> None:
        self.name = p.name

    def apply_TagDeleted(self, p: ev.TagDeleted) -> None:
        self.deleted = True

    def apply_TagBound(self, p: ev.TagBound) -> None:
        self.targets.add(p.target_id)

    def apply_TagUnbound(self, p: ev.TagUnbound) -> None:
        self.targets.discard(p.target_id)

    def visible_to(self, tenant_id: UUID | None) -> bool:
        # Another workspace's tag is indistinguishable from a missing one.
        return (self.exists and not self.deleted and self.tenant_id == tenant_id
                and self.tag_type == TAG_TYPE)

    def ensure_visible_to(self, tenant_id: UUID | None) -> None:
        if not self.visible_to(tenant_id):
            raise TagNotFound()

    def create(self, name: str, ctx: Context) -> None:
        if self.exists:
            raise BadRequest("Tag already exists.")
        self.record(ev.TagCreated(name=name, type=TAG_TYPE, created_by=ctx.actor_id), ctx)

    def rename(self, name: str, ctx: Context) -> None:
        self.record(ev.TagRenamed(name=name, updated_by=ctx.actor_id), ctx)

    def delete(self, ctx: Context) -> None:
        self.record(ev.TagDeleted(deleted_by=ctx.actor_id), ctx)

    def bind(self, target_id: UUID, ctx: Context) -> None:
        if target_id not in self.targets:
            self.record(ev.TagBound(target_id=target_id, created_by=ctx.actor_id), ctx)

    def unbind(self, target_id: UUID, ctx: Context) -> None:
        if target_id in self.targets:
            self.record(ev.TagUnbound(target_id=target_id), ctx)


# --- handlers --------------------------------------------------------------------------------


def _name(uow: UnitOfWork, name: str) -> TagName:
    return uow.get(TagName, tag_name_id(uow.ctx.tenant_id, TAG_TYPE, name))


def _visible_tag(uow: UnitOfWork, tag_id: UUID) -> Tag | None:
    """This workspace's tag, or None."""
    tag = uow.get(Tag, tag_id)
    return tag if tag.visible_to(uow.ctx.tenant_id) else None


def _existing_tag(uow: UnitOfWork, tag_id: UUID) -> Tag:
    tag = _visible_tag(uow, tag_id)
    if tag is None:
        raise TagNotFound()
    return tag


def create_tag(c: cmd.CreateTag, uow: UnitOfWork) -> dict[str, Any]:
    _name(uow, c.name).claim(c.tag_id, uow.ctx)
    uow.get(Tag, c.tag_id).create(c.name, uow.ctx)
    return {"tag_id": str(c.tag_id)}


def rename_tag(c: cmd.RenameTag, uow: UnitOfWork) -> dict[str, Any]:
    tag = _existing_tag(uow, c.tag_id)
    if tag.name != c.name:
        _name(uow, c.name).claim(tag.id, uow.ctx)
        _name(uow, tag.name).release(tag.id, uow.ctx)
        tag.rename(c.name, uow.ctx)
    return {"tag_id": str(c.tag_id)}


def delete_tag(c: cmd.DeleteTag, uow: UnitOfWork) -> dict[str, Any]:
    # Its bindings go with it (the projector drops them); the datasets stay.
    tag = _existing_tag(uow, c.tag_id)
    _name(uow, tag.name).release(tag.id, uow.ctx)
    tag.delete(uow.ctx)
    return {"tag_id": str(c.tag_id)}


def _tags_of_binding(uow: UnitOfWork, c: cmd.BindTags | cmd.UnbindTags) -> Iterator[Tag]:
    """The visible tags a (un)binding names, each once, after checking its dataset is
    visible. Unknown tag ids are ignored, as Dify's spec says."""
    visible_dataset(uow, c.target_id)
    for tag_id in dict.fromkeys(c.tag_ids):
        tag = _visible_tag(uow, tag_id)
        if tag is not None:
            yield tag


def bind_tags(c: cmd.BindTags, uow: UnitOfWork) -> dict[str, Any]:
    for tag in _tags_of_binding(uow, c):
        tag.bind(c.target_id, uow.ctx)
    return {"target_id": str(c.target_id)}


def unbind_tags(c: cmd.UnbindTags, uow: UnitOfWork) -> dict[str, Any]:
    for tag in _tags_of_binding(uow, c):
        tag.unbind(c.target_id, uow.ctx)
    return {"target_id": str(c.target_id)}


HANDLERS = command_handlers(create_tag, rename_tag, delete_tag, bind_tags, unbind_tags)
