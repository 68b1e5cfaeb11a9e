"""The bounded contexts Eddy is made of. Adding one: its own packages in each layer, a
manifest (`contexts/<name>.py`), and one line here."""

from __future__ import annotations

from contexts.conversation import CONVERSATION
from contexts.knowledge import KNOWLEDGE
from contexts.mail import MAIL
from contexts.manifest import ContextManifest
from contexts.platform import PLATFORM
from contexts.workflow import WORKFLOW

CONTEXTS: tuple[ContextManifest, ...] = (
    PLATFORM,
    KNOWLEDGE,
    CONVERSATION,
    WORKFLOW,
    MAIL,
)
