"""What a code sandbox is: run one program of a code node, in a language Dify's code node
offers, on JSON inputs, within limits, and answer its `main`'s JSON outputs or a typed error.

Every error is final for the node (the engine applies its error strategy); none is transient:
the same program on the same inputs fails the same way."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# jinja2: `code` is a template rendered with the inputs, answered as {"result": text}
CodeLanguage = Literal["python3", "javascript", "jinja2"]
CODE_NODE_LANGUAGES: tuple[CodeLanguage, ...] = ("python3", "javascript")


@dataclass(frozen=True)
class SandboxLimits:
    timeout_seconds: float = 15.0  # wall clock (CODE_EXECUTION_TIMEOUT)
    memory_mb: int = 256  # address space (Python) or heap (JavaScript) (CODE_MAX_MEMORY_MB)
    max_processes: int = 16  # tasks of the program's user: processes and threads
    max_output_bytes: int = 4 * 1024 * 1024  # the outputs' JSON
    max_file_bytes: int = 16 * 1024 * 1024  # any one file it writes, and its /tmp in all
    max_open_files: int = 64
    # CPU time (RLIMIT_CPU); None: a second more than the wall clock's, so that a single
    # thread always meets the wall clock first; this stops one spinning several threads.
    cpu_limit_seconds: int | None = None

    @property
    def cpu_seconds(self) -> int:
        if self.cpu_limit_seconds is not None:
            return self.cpu_limit_seconds
        return math.ceil(self.timeout_seconds) + 1


class SandboxError(Exception):
    """The program did not produce outputs; `str(error)` is the message the node shows."""


class SandboxUnavailable(SandboxError):
    """The cage cannot be built on this machine (a missing binary, not root)."""


class CodeExecutionError(SandboxError):
    """The program raised (or `main` is missing, or answered something other than an
    object): its error, as the language reported it."""


class CodeTimeout(SandboxError):
    """The program ran past its wall-clock or CPU-time limit and was killed."""


class CodeResourceLimit(SandboxError):
    """The program hit its memory, process or file-size limit."""


class CodeOutputTooLarge(SandboxError):
    """The program's outputs exceed `max_output_bytes`."""


class CodeSandbox(Protocol):
    async def run(self, language: CodeLanguage, code: str, inputs: Mapping[str, Any],
                  limits: SandboxLimits) -> dict[str, Any]:
        """Run `code` (defining `main`) with `inputs` as its keyword arguments (Python) or
        its one object argument (JavaScript); answer what `main` returned. For jinja2,
        render the template `code` with `inputs`: {"result": text}."""
        ...
