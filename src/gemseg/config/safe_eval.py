"""Evaluate the one Python expression pattern found in official GEM configs — without executing code.

The official ``Base-*.yaml`` files set ``MIN_SIZE_TRAIN: !!python/object/apply:eval ["[int(x * 0.1 * 512) for x in
range(5, 21)]"]``. PyYAML's unsafe loader would run ``eval`` on it (an arbitrary-code hole). We parse the string with
:mod:`ast` and interpret a tiny, side-effect-free subset: numeric/str constants, arithmetic, lists/tuples, list
comprehensions, and calls to ``int``, ``float``, ``round``, ``range``, ``min``, ``max``, ``abs``. Anything else is
rejected.
"""
from __future__ import annotations

import ast
import operator
from typing import Any, Dict

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCS = {"int": int, "float": float, "round": round, "range": range, "min": min, "max": max, "abs": abs}
_MAX_ITEMS = 100_000  # a config value never needs more; guards against range(10**12)


class UnsafeExpression(ValueError):
    """The expression uses something outside the allowed subset."""


def safe_eval(expr: str) -> Any:
    """Evaluate ``expr`` if it is within the allowed subset, else raise :class:`UnsafeExpression`."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise UnsafeExpression(f"not a valid expression: {expr!r}") from e
    value = _eval(tree.body, {})
    if isinstance(value, range):
        value = list(value)
    return value


def _eval(node: ast.AST, env: Dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise UnsafeExpression(f"name {node.id!r} is not allowed")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, env), _eval(node.right, env)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise UnsafeExpression("exponent too large")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, env))
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_eval(e, env) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        args = [_eval(a, env) for a in node.args]
        result = _FUNCS[node.func.id](*args)
        if isinstance(result, range) and len(result) > _MAX_ITEMS:
            raise UnsafeExpression("range too large")
        return result
    if isinstance(node, ast.ListComp) and len(node.generators) == 1:
        gen = node.generators[0]
        if not isinstance(gen.target, ast.Name) or gen.is_async:
            raise UnsafeExpression("only simple comprehensions are allowed")
        iterable = _eval(gen.iter, env)
        if not isinstance(iterable, (range, list, tuple)) or len(iterable) > _MAX_ITEMS:
            raise UnsafeExpression("comprehension must iterate over a small range, list or tuple")
        out = []
        for item in iterable:
            inner = {**env, gen.target.id: item}
            if all(_eval(cond, inner) for cond in gen.ifs):
                out.append(_eval(node.elt, inner))
        return out
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        ops = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
               ast.Eq: operator.eq, ast.NotEq: operator.ne}
        if type(node.ops[0]) in ops:
            return ops[type(node.ops[0])](_eval(node.left, env), _eval(node.comparators[0], env))
    raise UnsafeExpression(f"{type(node).__name__} is not allowed in a config expression")
