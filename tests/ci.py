"""What CI demands of a test run: the programs the tests need are there, and nothing skips.

A test that needs a program calls `require("redis-server")`: locally it skips without it,
saying what to install; in CI (`CI` set) it fails. `SkipPolicy` (registered in conftest.py)
makes a CI run fail when any test skipped that is not on tests/allowed-skips.txt, so that a
green run means every test ran. The programs are listed once, in .ci/required-tools, which
`.ci/tools` also reads to install them.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
REQUIRED_TOOLS = REPO / ".ci" / "required-tools"
ALLOWED_SKIPS = Path(__file__).parent / "allowed-skips.txt"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip() not in ("", "0", "false", "False", "FALSE", "no")


@dataclass(frozen=True)
class Tool:
    command: str
    packages: str
    needed_by: str


def required_tools(path: Path = REQUIRED_TOOLS) -> dict[str, Tool]:
    tools = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command, packages, needed_by = (part.strip() for part in line.split("|"))
        tools[command] = Tool(command, packages, needed_by)
    return tools


def require(command: str) -> str:
    """The path of a listed program; without it, skip (locally) or fail (in CI)."""
    tool = required_tools()[command]  # a KeyError here: add the program to the list first
    found = shutil.which(command)
    if found is not None:
        return found
    message = f"{command} is missing (apt-get install {tool.packages}), needed for {tool.needed_by}"
    if in_ci():
        pytest.fail(f"{message}; CI does not skip these tests", pytrace=False)
    pytest.skip(message)


def allowed_skips(path: Path = ALLOWED_SKIPS) -> list[str]:
    """Node id patterns (fnmatch) of the tests that may skip in CI, comments stripped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


class SkipPolicy:
    """Collects every skip; when enforced, one not on the allow-list fails the run."""

    def __init__(self, allowed: list[str], enforce: bool) -> None:
        self.allowed = allowed
        self.enforce = enforce
        self.refused: list[tuple[str, str]] = []

    def _seen(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        if any(fnmatch.fnmatchcase(report.nodeid, pattern) for pattern in self.allowed):
            return
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        self.refused.append((report.nodeid, reason.removeprefix("Skipped: ")))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._seen(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._seen(report)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.enforce and self.refused and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not (self.enforce and self.refused):
            return
        terminalreporter.section("skips are failures in CI", sep="=", red=True, bold=True)
        for nodeid, reason in self.refused:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}")
        terminalreporter.line(
            f"{len(self.refused)} test(s) skipped that are not on "
            f"{ALLOWED_SKIPS.relative_to(REPO)}: install what they need, or list them there "
            "with the reason they may skip"
        )
