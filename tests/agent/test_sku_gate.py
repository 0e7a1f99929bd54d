"""A plan that refuses a tool's SKU: the agent's tool step is refused with a typed error before
any hold is placed for it, and the steps before it are paid as usual."""

from __future__ import annotations

import pytest

from lipika.billing.models import HoldStatus
from tests.agent.conftest import request, run_all
from tests.agent.scripted import Reply, Script


@pytest.mark.parametrize("refuse", [["agent.calculator"], ["call"]])
async def test_a_plan_refusing_a_tool_refuses_the_tool_step_before_any_hold(
    books, make_agent, extra_plans, refuse: list[str]
) -> None:
    extra_plans({"no-tools": {"models": ["*"], "refuse": refuse, "monthly_credits": 100}})
    workspace = await books.new_wallet(plan="no-tools")
    script = Script([Reply(tool_calls=[("calculator", {"expression": "6*7"})], input_tokens=100)])

    events = await run_all(make_agent(script), request(workspace))

    assert [e["type"] for e in events] == ["usage", "error"]
    error = events[-1]["error"]
    assert (error["code"], error["type"]) == ("sku_not_in_plan", "permission_error")
    assert error["details"] == {"entry": "agent.calculator", "kind": "call", "plan": "no-tools"}
    holds = await books.holds(workspace)
    assert [(h.operation, h.status) for h in holds] == [("agent.model", HoldStatus.CAPTURED)]
    assert (await books.state(workspace)).held == 0
    await books.assert_balanced()
