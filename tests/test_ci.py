"""The CI guarantees themselves: a missing program fails CI (never skips), and so does a skip
that is not on the allow-list."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ci import REPO, allowed_skips, require, required_tools

SUITE = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("no frobnicator here")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
"""

POLICY = """
from tests.ci import SkipPolicy

def pytest_configure(config):
    config.pluginmanager.register(SkipPolicy({allowed!r}, enforce={enforce}), "skip-policy")
"""


def run_suite(
    pytester: pytest.Pytester, allowed: list[str], enforce: bool, *args: str
) -> pytest.RunResult:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(POLICY.format(allowed=allowed, enforce=enforce))
    pytester.makepyfile(test_suite=SUITE)
    pytester.makepyfile(
        test_module_skip="import pytest\npytest.skip('no widget', allow_module_level=True)\n"
    )
    return pytester.runpytest("-p", "no:cacheprovider", "-rs", *args)


# `make test` runs the suite on pytest-xdist's workers: their skips reach the policy too.
@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["in-process", "xdist"])
def test_ci_run_with_a_skip_not_on_the_allow_list_fails(
    pytester: pytest.Pytester, workers: tuple[str, ...]
) -> None:
    result = run_suite(pytester, [], True, *workers)
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*skips are failures in CI*",
            "SKIPPED test_module_skip.py: no widget",
            "SKIPPED test_suite.py::test_skips: no frobnicator here",
            "2 test(s) skipped that are not on tests/allowed-skips.txt*",
        ]
    )


def test_ci_run_passes_when_every_skip_is_allowed(pytester: pytest.Pytester) -> None:
    result = run_suite(
        pytester, allowed=["test_suite.py::test_sk*", "test_module_skip.py"], enforce=True
    )
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    assert "skips are failures" not in result.stdout.str()


def test_local_run_may_skip(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, allowed=[], enforce=False)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["SKIPPED*no frobnicator here"])  # reported, not a failure


def test_allow_list_is_short_and_every_entry_says_why() -> None:
    entries = allowed_skips()
    assert len(entries) <= 5
    for line in (REPO / "tests" / "allowed-skips.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "#" in line, f"{line!r}: say why it may skip"


def _path_without_tools(tmp_path: Path) -> str:
    """A PATH with a shell and make, but none of the required programs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("bash", "sh", "make"):
        found = shutil.which(program)
        assert found is not None
        (bin_dir / program).symlink_to(found)
    return str(bin_dir)


def test_require_skips_locally_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", _path_without_tools(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    # BaseException: a skip must not escape as a skip of this test.
    with pytest.raises(BaseException, match=r"apt-get install redis-server") as local:
        require("redis-server")
    assert local.type is pytest.skip.Exception
    monkeypatch.setenv("CI", "true")
    with pytest.raises(BaseException, match=r"redis-server is missing.*CI does not skip") as ci:
        require("redis-server")
    assert ci.type is pytest.fail.Exception


def test_require_finds_a_listed_program(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "node").write_text("#!/bin/sh\n")
    (bin_dir / "node").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("CI", "true")
    assert require("node") == str(bin_dir / "node")


def make_tools(path: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "tools"],
        env={"PATH": path, "HOME": os.environ.get("HOME", "/"), **env},
        capture_output=True,
        text=True,
        check=False,
        executable=shutil.which("make"),
    )


def test_make_test_in_ci_fails_without_a_required_program(tmp_path: Path) -> None:
    path = _path_without_tools(tmp_path)
    ci = make_tools(path, CI="true")
    assert ci.returncode != 0
    assert "CI does not skip their tests" in ci.stderr
    for tool in required_tools().values():
        assert f"{tool.command} (apt-get install {tool.packages})" in ci.stderr
    local = make_tools(path)
    assert local.returncode == 0, local.stderr
    assert "the tests that need them will skip" in local.stderr


def test_make_test_in_ci_passes_the_check_with_every_program(tmp_path: Path) -> None:
    path = _path_without_tools(tmp_path)
    for command in required_tools():
        (Path(path) / command).write_text("#!/bin/sh\n")
        (Path(path) / command).chmod(0o755)
    ci = make_tools(path, CI="true")
    assert ci.returncode == 0, ci.stderr
    assert ci.stderr == ""
