"""Tests synchronise on conditions, not on the clock: no test sleeps a fixed time outside a
loop. A sleep inside a ``while``/``for`` (polling a condition with a deadline, pacing a
feed) is fine, and so is ``asyncio.sleep(0)`` (a yield); ``helpers.wait_for`` is the way to
wait for something to happen. Publisher child processes (tests/publisher.py) pace
themselves and are not test files. A sleep that IS the behaviour under test (a slow consumer)
says so on its line with ``# simulated work``."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _enclosing(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> list[ast.AST]:
    """The nodes around ``node`` up to its function."""
    found: list[ast.AST] = []
    parent = parents.get(node)
    while parent is not None and not isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)):
        found.append(parent)
        parent = parents.get(parent)
    return found


def fixed_sleeps(source: str) -> list[int]:
    """Line numbers of ``asyncio.sleep(N)`` / ``time.sleep(N)`` calls outside any loop."""
    tree = ast.parse(source)
    text = source.splitlines()
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "sleep"
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("asyncio", "time")):
            continue
        if node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == 0:
            continue
        if "# simulated work" in text[node.lineno - 1]:
            continue
        if not any(isinstance(p, (ast.For, ast.AsyncFor, ast.While)) for p in _enclosing(node, parents)):
            lines.append(node.lineno)
    return lines


def test_the_checker_finds_a_fixed_sleep() -> None:
    source = ("import asyncio\nasync def test_x():\n    await asyncio.sleep(0.5)\n"
              "    while True:\n        await asyncio.sleep(0.1)\n    await asyncio.sleep(0)\n")
    assert fixed_sleeps(source) == [3]


def test_no_test_sleeps_a_fixed_time() -> None:
    found = {path.name: lines for path in sorted(TESTS.glob("test_*.py"))
             if (lines := fixed_sleeps(path.read_text()))}
    assert found == {}, f"wait on the condition (helpers.wait_for) instead of sleeping: {found}"
