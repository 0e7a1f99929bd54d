from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from lipika.agent.history import STOPPED, to_provider
from lipika.providers.base import Message, ToolCall


def call(call_id: str, name: str = "clock") -> dict:
    return {"id": call_id, "name": name, "args": {"timezone": "UTC"}, "type": "tool_call"}


def test_messages_convert_with_their_tool_calls_and_answers() -> None:
    converted = to_provider(
        [
            SystemMessage("Be brief."),
            HumanMessage("Time?"),
            AIMessage("Checking.", tool_calls=[call("a")]),
            ToolMessage("12:00", tool_call_id="a", name="clock"),
            AIMessage("Noon."),
        ]
    )
    assert converted == [
        Message("system", "Be brief."),
        Message("user", "Time?"),
        Message("assistant", "Checking.", tool_calls=(ToolCall("a", "clock", {"timezone": "UTC"}),)),
        Message("tool", "12:00", tool_call_id="a", name="clock"),
        Message("assistant", "Noon."),
    ]


def test_a_call_a_stopped_run_left_unanswered_gets_an_error_result_in_place() -> None:
    converted = to_provider(
        [
            HumanMessage("Time here and there?"),
            AIMessage("", tool_calls=[call("a"), call("b")]),
            ToolMessage("12:00", tool_call_id="a", name="clock"),
            # the run stopped here: "b" was never answered
            HumanMessage("Try again?"),
        ]
    )
    assert [(m.role, m.tool_call_id, m.content) for m in converted] == [
        ("user", None, "Time here and there?"),
        ("assistant", None, ""),
        ("tool", "a", "12:00"),
        ("tool", "b", STOPPED),
        ("user", None, "Try again?"),
    ]
