"""The consumer groups the workers run, as operations tools see them (replay, `eddy groups`)."""

from __future__ import annotations

from events.replay import ReceivingGroup
from workers.container import WorkerContainer
from workers.node import all_roles, processors_of


def declared_groups(c: WorkerContainer) -> list[ReceivingGroup]:
    """Every consumer group of every role, with its topics and whether it has side effects."""
    return [ReceivingGroup(p.group, tuple(p.topics), p.side_effects)
            for role in all_roles(c.work) for p in processors_of(c, role)]
