"""Permission policies (layer 3): what the engine may do with a tool call, decided in one place.

Each call the model makes is evaluated when it is logged: ``allow`` runs it, ``ask`` waits for
the user's ``user.tool_confirmation``, ``deny`` refuses it (a tool the agent does not have).
The agent's ``permission_policy`` per tool gives the answer: ``always_allow``, ``always_ask``,
or ``auto``, which asks a judge; agenthost has no judge yet, so ``auto`` evaluates every call
as indeterminate, and indeterminate asks. Custom tools are not evaluated: the client runs them.
"""

from __future__ import annotations

from agenthost.schemas.common import JSON
from agenthost.tools.base import ToolOutput
from agenthost.tools.registry import ToolSpec

ASK_AUTO = {"type": "auto", "evaluated_permission": {"type": "ask", "reason_code": "indeterminate"}}


def evaluate(spec: ToolSpec | None) -> JSON:
    """The ``evaluated_permission`` and ``evaluation`` fields of a built-in or MCP call to ``spec``."""
    if spec is None:
        return {"evaluated_permission": "deny", "evaluation": None}
    if spec.policy == "always_allow":
        return {"evaluated_permission": "allow", "evaluation": {"type": "always_allow"}}
    if spec.policy == "always_ask":
        return {"evaluated_permission": "ask", "evaluation": {"type": "always_ask"}}
    return {"evaluated_permission": "ask", "evaluation": ASK_AUTO}


def waits_on_client(call: JSON) -> bool:
    """Whether the call needs the client before anything runs: a custom tool, or a confirmation."""
    return call["type"] == "agent.custom_tool_use" or call.get("evaluated_permission") == "ask"


def refusal(call: JSON, confirmation: JSON | None) -> ToolOutput:
    """The result of a call its policy (no confirmation) or the user refused."""
    if confirmation is None:
        return ToolOutput.text(f"Tool {call['name']} is not enabled for this agent.", is_error=True)
    text = f"Permission to use {call['name']} was denied by the user."
    if confirmation.get("deny_message"):
        text += f" Reason: {confirmation['deny_message']}"
    return ToolOutput.text(text, is_error=True)
