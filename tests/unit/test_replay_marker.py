"""Who acts on a replayed message: the marker the replay sets, as consumers read it."""

from __future__ import annotations

import pytest

from events.listing import EventFilter
from events.replay import REPLAY_ID, ReceivingGroup, Replay, ReplayError, skip_reason

GROUPS = [ReceivingGroup("projection.console_v1", ("events.knowledge",)),
          ReceivingGroup("mail", ("events.knowledge", "mail"), side_effects=True),
          ReceivingGroup("indexing", ("indexing",))]


def test_live_messages_go_to_everyone() -> None:
    assert skip_reason({"event_type": "X"}, "mail", side_effects=True) is None


@pytest.mark.parametrize(("group", "allow", "acting", "skipping"), [
    (None, False, ["projection.console_v1"], ["mail"]),
    (None, True, ["projection.console_v1", "mail"], []),
    ("mail", False, [], ["mail"]),
    ("projection.console_v1", False, ["projection.console_v1"], []),
])
def test_replay_receivers_match_what_consumers_decide(group: str | None, allow: bool,
                                                      acting: list[str],
                                                      skipping: list[str]) -> None:
    replay = Replay(EventFilter(), GROUPS, group=group, allow_side_effects=allow)
    planned = dict(replay.receivers(["events.knowledge"]))
    assert [g.name for g, acts in planned.items() if acts] == acting
    assert [g.name for g, acts in planned.items() if not acts] == skipping
    headers = replay.headers()
    assert REPLAY_ID in headers
    for g in GROUPS:
        if "events.knowledge" in g.topics:
            handled = skip_reason(headers, g.name, g.side_effects) is None
            assert handled == (g.name in acting)


def test_unknown_group_is_refused() -> None:
    with pytest.raises(ReplayError, match="unknown consumer group 'nope'"):
        Replay(EventFilter(), GROUPS, group="nope")
