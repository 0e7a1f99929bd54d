from __future__ import annotations

from lipika.providers.base import Message, ToolCall, turns


def test_consecutive_answers_form_one_turn_and_system_messages_drop_out() -> None:
    calls = (ToolCall("a", "clock", {}), ToolCall("b", "clock", {}))
    asked = Message("assistant", "", tool_calls=calls)
    answer_a = Message("tool", "12:00", tool_call_id="a", name="clock")
    answer_b = Message("tool", "18:00", tool_call_id="b", name="clock")
    plain_tool = Message("tool", "pasted output")  # a client's tool message: plain text
    question, thanks = Message("user", "Times?"), Message("user", "Thanks")

    grouped = list(
        turns(
            [
                Message("system", "Be brief."),
                question,
                asked,
                answer_a,
                Message("system", "Mid-conversation instruction."),
                answer_b,
                thanks,
                plain_tool,
            ]
        )
    )

    assert grouped == [question, asked, (answer_a, answer_b), thanks, plain_tool]
