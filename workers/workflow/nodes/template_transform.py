"""The template-transform node: renders its Jinja2 `template` with the values of its
`variables` selectors, as Dify does, inside the code sandbox (`call.services.sandbox`,
language jinja2: Jinja2's SandboxedEnvironment in the cage, so a template that loops
forever or builds a huge string meets the code limits, not the worker's event loop), and
fails past TEMPLATE_TRANSFORM_MAX_LENGTH characters."""

from __future__ import annotations

from adapters.sandbox.base import SandboxError
from config import Settings
from workers.workflow.nodes.base import NodeCall, NodeError, NodeResult
from workers.workflow.nodes.code import sandbox_limits, selected_inputs


async def execute_template_transform(call: NodeCall) -> NodeResult:
    data = call.node.data
    inputs = selected_inputs(call.pool, data.get("variables"))
    settings: Settings = call.services.settings
    try:
        rendered = await call.services.sandbox.run("jinja2", data.get("template") or "",
                                                   inputs, sandbox_limits(settings))
    except SandboxError as error:
        raise NodeError(str(error), "TemplateTransformError") from None
    text = rendered.get("result")
    if not isinstance(text, str):
        raise NodeError("The template rendered no text", "TemplateTransformError")
    limit = settings.TEMPLATE_TRANSFORM_MAX_LENGTH
    if len(text) > limit:
        raise NodeError(f"Output length exceeds {limit} characters", "TemplateTransformError")
    return NodeResult(outputs={"output": text}, inputs=inputs)
