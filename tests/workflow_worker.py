"""An engine worker process for fault tests: `eddy worker --roles workflow.runs` whose `code`
nodes are a test's slow step (real executors with outside effects are other modules'): each
execution appends "<node id> <attempt>" to the file named by EDDY_TEST_EXECUTIONS, then takes
EDDY_TEST_STEP_SECONDS and answers {"result": <node id>}.

    python -m tests.workflow_worker <member>
"""

from __future__ import annotations

import asyncio
import os
import sys

import cli
from workers.workflow.nodes import EXECUTORS
from workers.workflow.nodes.base import NodeCall, NodeResult


def _log_execution(line: str) -> None:
    with open(os.environ["EDDY_TEST_EXECUTIONS"], "a") as log:
        log.write(line)


async def slow_step(call: NodeCall) -> NodeResult:
    await asyncio.to_thread(_log_execution, f"{call.node.id} {call.attempt}\n")
    await asyncio.sleep(float(os.environ.get("EDDY_TEST_STEP_SECONDS", "1")))
    return NodeResult(outputs={"result": call.node.id})


if __name__ == "__main__":
    EXECUTORS["code"] = slow_step
    sys.exit(cli.main(["worker", "--roles", "workflow.runs", "--member", sys.argv[1]]))
