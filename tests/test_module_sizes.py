"""Modules stay small: at most about 400 lines each, so each can be read whole.

A few modules are still over the budget, each at exactly its recorded size: it may not grow,
and when it shrinks its record comes down with it, until it fits and leaves the list. A new
module over the budget fails.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent.parent
BUDGET = 400
STILL_OVER = {
    "agenthost/engine/loop.py": 637,  # the run: its model step and recovery are to move out next
    "agenthost/store/memory.py": 567,
    "agenthost/store/sessions.py": 550,
    "agenthost/schemas/tools.py": 520,
}


def _sizes() -> dict[str, int]:
    return {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in sorted((ROOT / "agenthost").rglob("*.py"))
        if "migrations/versions" not in str(path)
    }


def test_no_module_is_over_its_budget() -> None:
    over = {name: lines for name, lines in _sizes().items() if lines > STILL_OVER.get(name, BUDGET)}
    assert over == {}, f"over the {BUDGET}-line budget (split them by job): {over}"


def test_the_modules_still_over_the_budget_are_recorded_at_their_size() -> None:
    sizes = _sizes()
    fitting = [name for name in STILL_OVER if sizes.get(name, 0) <= BUDGET]
    assert fitting == [], f"these fit the budget now: take them off STILL_OVER: {fitting}"
    shrunk = {name: sizes[name] for name, recorded in STILL_OVER.items() if sizes[name] < recorded}
    assert shrunk == {}, f"these shrank: record their new sizes in STILL_OVER: {shrunk}"
