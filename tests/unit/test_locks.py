"""The locks are what every install uses (make run, make test, CI, the image): they must hold
every dependency pyproject.toml names, in a version its range allows, with hashes, and the
gateway's lock must run exactly the versions its tests ran with."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def pins(name: str) -> dict[str, str]:
    text = (ROOT / "requirements" / name).read_text()
    return {canonicalize_name(n): v for n, v in PIN.findall(text)}


def project() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"run": data["dependencies"], "dev": data["optional-dependencies"]["dev"]}


def test_every_declared_dependency_is_locked_in_a_version_its_range_allows() -> None:
    declared = project()
    for lock, requirements in (
        ("run.txt", declared["run"]),
        ("dev.txt", declared["run"] + declared["dev"]),
    ):
        locked = pins(lock)
        for line in requirements:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in locked, f"{name} is not in requirements/{lock}: run `make lock`"
            assert requirement.specifier.contains(locked[name], prereleases=True), (
                f"requirements/{lock} pins {name}=={locked[name]}, outside {requirement}: "
                "run `make lock`"
            )


def test_the_gateway_runs_the_versions_its_tests_ran_with() -> None:
    run, dev = pins("run.txt"), pins("dev.txt")
    assert run, "requirements/run.txt pins nothing"
    assert {name: dev.get(name) for name in run} == run


def test_every_pin_carries_hashes() -> None:
    for lock in ("run.txt", "dev.txt"):
        text = (ROOT / "requirements" / lock).read_text()
        for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
            if PIN.match(block):
                assert "--hash=sha256:" in block, block.splitlines()[0]


def test_every_install_is_hash_checked_from_a_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r requirements/run.txt" in dockerfile
    for lock in ("$(LOCK_RUN)", "$(LOCK_DEV)"):
        assert f"pip install --quiet --require-hashes --no-deps -r {lock}" in makefile
    # Every other pip install of the project resolves nothing: no dependency from outside a lock.
    for text in (dockerfile, makefile):
        for line in re.findall(r"pip install[^\n]*", text):
            assert "--no-deps" in line, line
