"""The import rules docs/ARCHITECTURE.md states ("Import rules"), checked on the source: a
module that breaks one fails here, not in review."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

GATEWAY = Path(__file__).parents[2] / "gateway"


def imports_of(path: Path) -> set[str]:
    """Every `gateway...` module a file imports (type-checking-only imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name == "gateway" or name.startswith("gateway.")}


def modules(package: str) -> list[Path]:
    root = GATEWAY / package
    return sorted(root.rglob("*.py")) if root.is_dir() else [GATEWAY / f"{package}.py"]


# (the modules, the imports they must not have, why)
RULES = [
    ("parts", ("gateway.",), "the parts model is a leaf both sides import"),
    (
        "providers",
        ("gateway.api", "gateway.dialects", "gateway.native", "gateway.resume"),
        "adapters know only their upstream",
    ),
    (
        "dialects",
        (
            "gateway.providers.openai",
            "gateway.providers.anthropic",
            "gateway.providers.gemini",
            "gateway.providers.ollama",
            "gateway.native",
            "gateway.api",
        ),
        "client dialects never know an upstream's words",
    ),
    (
        "resume",
        ("gateway.api", "gateway.dialects", "gateway.native"),
        "logs and readers are independent of any wire framing",
    ),
    (
        "relay",
        ("gateway.api", "gateway.dialects", "gateway.native"),
        "the commit point is the same for every dialect",
    ),
]


@pytest.mark.parametrize(("package", "forbidden", "why"), RULES, ids=[rule[0] for rule in RULES])
def test_import_rules(package: str, forbidden: tuple[str, ...], why: str) -> None:
    broken = {
        f"{path.relative_to(GATEWAY)} imports {name}"
        for path in modules(package)
        for name in imports_of(path)
        if name.startswith(forbidden) or name in {f.rstrip(".") for f in forbidden}
    }
    assert not broken, f"{why}: {sorted(broken)}"


def test_the_rules_see_imports() -> None:
    # The checker itself: a rule that could never fire would pass whatever the code did.
    assert "gateway.parts" in imports_of(GATEWAY / "providers" / "_calls.py")
    assert "gateway.errors" in imports_of(GATEWAY / "relay.py")


def test_starting_the_gateway_imports_no_optional_heavyweights() -> None:
    """botocore and redis-py are ~20 MiB each once imported: a gateway imports them only when
    a Bedrock provider or `redis_url` needs them (RSS at rest, docs/PERFORMANCE.md)."""
    script = (
        "import sys, gateway.app, gateway.cli, gateway.server\n"
        "print(' '.join(m for m in ('botocore', 'redis') if m in sys.modules))"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == ""
