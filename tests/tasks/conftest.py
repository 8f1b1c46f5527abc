"""Helpers for the Taskmaster tests: run `parley tasks …` in-process or as the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import ROOT

SAMPLE_PRD = ROOT / "docs" / "sample-prd.md"
PARLEY = [sys.executable, "-m", "parley.cli.main"]

NESTED_PRD = """\
# Widget PRD

## Background
- Widgets are popular.

## Phase 1: Basics
1. Make a widget (priority: high)
2. Paint the widget
   Acceptance criteria:
   - the paint is dry within an hour

## Phase 2: Scale
### Phase 2a: Factory
- Build a factory line
- Hire staff [P3]

### Phase 2b: Shipping
Trucks take widgets to shops.

### Acceptance criteria
- 100 widgets a day leave the factory

## Phase 3: Extras (optional)
- Gift wrapping
"""


#: `cli(*args, env=None)` -> click `Result` of `parley *args` run in this process.
CLI = Callable[..., Any]


def read_tasks(path: Path) -> list[dict]:
    return json.loads(path.read_text())["tasks"]


@pytest.fixture
def tasks_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project folder as the current directory, with no TASK_FILE set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TASK_FILE", raising=False)
    return tmp_path


@pytest.fixture
def cli():  # type: ignore[no-untyped-def]
    """Invoke `parley …` in this process (so run-time registered providers are visible)."""
    from parley.cli.main import app

    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})

    return invoke


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `parley` command in a subprocess."""
    full = {k: v for k, v in os.environ.items() if k != "TASK_FILE"}
    full.update({"COLUMNS": "200", **(env or {})})
    return subprocess.run(
        [*PARLEY, *args], check=False, capture_output=True, text=True, cwd=cwd, env=full, timeout=60
    )
