"""Every `ProviderError` a provider raises says which component failed, so the engine need not guess."""

from __future__ import annotations

import ast
from pathlib import Path

PROVIDERS = Path(__file__).resolve().parents[2] / "src" / "parley" / "providers"


def test_every_provider_error_names_its_component() -> None:
    missing = []
    for path in sorted(PROVIDERS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ProviderError"
                    and not any(k.arg == "component" for k in node.keywords)):
                missing.append(f"{path.relative_to(PROVIDERS)}:{node.lineno}")
    assert not missing, ("ProviderError without component= (use self.error(...) in a provider): "
                         + ", ".join(missing))
