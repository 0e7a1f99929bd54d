"""The agent graph: a metered model node and a ToolNode whose every call is metered.

    START -> model -> (tool calls?) -> tools -> model -> ... -> END

The graph is compiled once per process with the checkpointer; each run brings its own
`RunContext` (who pays, which model, the run's limits), so one graph serves every model.
"""

from __future__ import annotations

from collections.abc import Sequence

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from lipika.agent.context import RunContext
from lipika.agent.nodes import AgentState, call_model, call_tool
from lipika.agent.tools import AgentTool


def build_graph(
    tools: Sequence[AgentTool], checkpointer: BaseCheckpointSaver | None
) -> CompiledStateGraph:
    graph = StateGraph(AgentState, context_schema=RunContext)
    graph.add_node("model", call_model)
    graph.add_node(
        "tools",
        ToolNode(
            [t.tool for t in tools],
            awrap_tool_call=call_tool,
            # Errors are handled in call_tool: input errors go back to the model, failures
            # end the run. The ToolNode's own handling would turn both into messages.
            handle_tool_errors=False,
        ),
    )
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "model")
    return graph.compile(checkpointer=checkpointer)
