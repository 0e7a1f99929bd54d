"""A calculator: arithmetic on numbers, evaluated from the parsed syntax tree (never `eval`).

Only numbers, + - * / // % **, parentheses, a few math functions and constants are allowed;
results are kept small, so no input can make the process spend unbounded time or memory.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from lipika.agent.tools.base import AgentTool, ToolInputError

MAX_EXPRESSION_CHARS = 500
MAX_INT_BITS = 4096
MAX_DEPTH = 50

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs,
    "round": round,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": lambda n: math.factorial(_small_int(n, 1000)),
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; `ToolInputError` for anything else."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolInputError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError):
        raise ToolInputError(f"not an arithmetic expression: {expression!r}") from None
    try:
        return _checked(_eval(tree.body, 0))
    except ToolInputError:
        raise
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
        raise ToolInputError(f"cannot compute {expression!r}: {exc}") from None


def _eval(node: ast.AST, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise ToolInputError("the expression is nested too deeply")
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            _refuse_huge_power(left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_eval(arg, depth + 1) for arg in node.args]
        return _checked(_FUNCTIONS[node.func.id](*args))
    raise ToolInputError(f"not allowed in an expression: {ast.unparse(node)!r}")


def _refuse_huge_power(base: Number, exponent: Number) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
        if max(base.bit_length(), 1) * exponent > MAX_INT_BITS:
            raise ToolInputError("the result would be too large")


def _checked(value: Any) -> Number:
    if isinstance(value, complex):
        raise ToolInputError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolInputError("the result is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolInputError("the result is not a finite number")
    return value


def _small_int(value: Number, limit: int) -> int:
    if not isinstance(value, int) or not 0 <= value <= limit:
        raise ToolInputError(f"expected a whole number from 0 to {limit}")
    return value


class CalculatorInput(BaseModel):
    expression: str = Field(
        description="An arithmetic expression, e.g. `(17 + 4) * 3 / 7` or `sqrt(2) * pi`."
    )


async def calculate(expression: str) -> str:
    return str(evaluate(expression))


TOOL = AgentTool(
    StructuredTool.from_function(
        coroutine=calculate,
        name="calculator",
        description=(
            "Evaluates an arithmetic expression exactly: + - * / // % ** and parentheses, "
            "sqrt, exp, log, log10, log2, sin, cos, tan, asin, acos, atan, floor, ceil, "
            "round, abs, factorial, and the constants pi, e, tau."
        ),
        args_schema=CalculatorInput,
    ),
    price="agent.calculator",
)
