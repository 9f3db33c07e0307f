"""A small, safe expression language over table columns, for selecting trials.

An expression is Python syntax restricted to: column names, numbers, strings, ``True``/``False``,
lists or tuples of constants (for ``in``), the comparisons ``== != < <= > >= in not in``,
``and``, ``or``, ``not``, the arithmetic ``+ - * /``, and the functions ``isnan(x)`` and
``abs(x)``. It is parsed with :mod:`ast` and every node is checked against that list; nothing is
ever passed to ``eval``, so an expression can read columns and nothing else. Evaluated on whole
columns at once (numpy), it gives one value per row: a boolean for a selection, or a number or
text for a derived column (``+`` joins text).

Examples
--------
>>> import numpy as np
>>> check_expression("stim_phase == 'recog' and response_value > 30")
('response_value', 'stim_phase')
>>> columns = {"a": np.array([1.0, 5.0, np.nan]), "b": np.array(["x", "y", "x"])}
>>> evaluate("a > 2 or b in ['x']", columns.__getitem__).tolist()
[True, True, True]
>>> evaluate("not isnan(a)", columns.__getitem__).tolist()
[True, True, False]
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["ExpressionError", "check_expression", "evaluate"]

_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}  # fmt: skip
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_FUNCTIONS = {"isnan": lambda x: np.isnan(np.asarray(x, dtype=float)), "abs": np.abs}
_ALLOWED = "column names, numbers, strings, lists of constants, == != < <= > >= in, and/or/not, + - * /, isnan(), abs()"


class ExpressionError(ValueError):
    """An expression that is not valid in the selection language (the message says why)."""


def check_expression(text: str) -> tuple[str, ...]:
    """Parse ``text`` and check every node; return the column names it reads (sorted).

    Raises
    ------
    ExpressionError
        If the text is not valid syntax or uses anything beyond the language.
    """
    return tuple(sorted({node.id for node in ast.walk(_parse(text)) if isinstance(node, ast.Name)} - set(_FUNCTIONS)))


def evaluate(text: str, column: Callable[[str], np.ndarray], *, boolean: bool = True) -> np.ndarray:
    """Evaluate ``text`` with ``column(name)`` giving each column's values: one value per row,
    which must be true/false when ``boolean``."""
    result = np.asarray(_Evaluator(column).visit(_parse(text).body))
    if boolean and result.dtype != bool:
        raise ExpressionError(f"the expression gives {result.dtype} values, not true/false per trial")
    return result


def _parse(text: str) -> ast.Expression:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"invalid syntax at column {error.offset}: {error.msg}") from None
    for node in ast.walk(tree):
        _check_node(node)
    return tree


def _check_node(node: ast.AST) -> None:
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.Compare,
               ast.In, ast.NotIn, ast.BinOp, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple, ast.Call,
               *_COMPARE, *_ARITHMETIC)  # fmt: skip
    if not isinstance(node, allowed):
        raise ExpressionError(f"{type(node).__name__} is not allowed; use only {_ALLOWED}")
    if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, bool)):
        raise ExpressionError(f"constant {node.value!r} is not allowed; use numbers or strings")
    if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
                                           and len(node.args) == 1 and not node.keywords):  # fmt: skip
        raise ExpressionError(f"only the functions {', '.join(_FUNCTIONS)} with one argument are allowed")
    if isinstance(node, (ast.List, ast.Tuple)) and not all(isinstance(e, ast.Constant) for e in node.elts):
        raise ExpressionError("lists may hold only constants, e.g. stimCategory in [1, 2]")


class _Evaluator(ast.NodeVisitor):
    def __init__(self, column: Callable[[str], np.ndarray]) -> None:
        self.column = column

    def visit_BoolOp(self, node: ast.BoolOp) -> np.ndarray:
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = self._truth(self.visit(node.values[0]))
        for value in node.values[1:]:
            result = combine(result, self._truth(self.visit(value)))
        return result

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        return np.logical_not(self._truth(value)) if isinstance(node.op, ast.Not) else -np.asarray(value)

    def visit_Compare(self, node: ast.Compare) -> np.ndarray:
        left, result = self.visit(node.left), None
        for op, right_node in zip(node.ops, node.comparators):
            right = self.visit(right_node)
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(right, list):
                    raise ExpressionError("'in' needs a list of constants on its right, e.g. x in [1, 2]")
                part = np.isin(np.asarray(left), right)
                part = ~part if isinstance(op, ast.NotIn) else part
            else:
                part = self._compare(_COMPARE[type(op)], left, right)
            result = part if result is None else result & part
            left = right
        return result

    def visit_BinOp(self, node: ast.BinOp) -> np.ndarray:
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, ast.Add) and all(np.asarray(v).dtype.kind in "US" for v in (left, right)):
            return np.char.add(np.asarray(left, dtype=str), np.asarray(right, dtype=str))
        try:
            return _ARITHMETIC[type(node.op)](np.asarray(left, dtype=float), np.asarray(right, dtype=float))
        except ValueError:
            raise ExpressionError("arithmetic needs numeric columns") from None

    def visit_Call(self, node: ast.Call) -> np.ndarray:
        try:
            return _FUNCTIONS[node.func.id](self.visit(node.args[0]))
        except (TypeError, ValueError):
            raise ExpressionError(f"{node.func.id}() needs a numeric column") from None

    def visit_Name(self, node: ast.Name) -> Any:
        return self.column(node.id)

    def visit_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def visit_List(self, node: ast.List | ast.Tuple) -> list:
        return [element.value for element in node.elts]

    visit_Tuple = visit_List

    @staticmethod
    def _compare(op: Callable, left: Any, right: Any) -> np.ndarray:
        left, right = np.asarray(left), np.asarray(right)
        if (left.dtype.kind in "US") != (right.dtype.kind in "US") and op not in (operator.eq, operator.ne):
            raise ExpressionError("cannot order text against numbers")
        if (left.dtype.kind in "US") != (right.dtype.kind in "US"):  # text == number: never equal
            return np.full(np.broadcast(left, right).shape, op is operator.ne)
        return op(left, right)

    @staticmethod
    def _truth(value: Any) -> np.ndarray:
        value = np.asarray(value)
        if value.dtype != bool:
            raise ExpressionError("and/or/not need comparisons (true/false), e.g. (a > 1) and (b == 'x')")
        return value
