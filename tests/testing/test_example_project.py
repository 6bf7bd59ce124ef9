"""examples/own-audit, a user's project, run as its users run it: `python -m pytest` in its
folder, in a process of its own, the fixtures coming from the installed plugin (entry point
`pytest11`), not from any conftest. Its CI workflow in docs/testing.md runs too."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import yaml

from auditkit._cli.main import main
from auditkit.testing import read_sample

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLE = ROOT / "examples" / "own-audit"
SETUP = ("sudo apt-get", "apt-get", "pip install")
"""Workflow steps that prepare a CI machine; this one has auditkit and redis-server."""


def _project(tmp_path: Path) -> Path:
    copy = tmp_path / "own-audit"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return copy


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "REDIS_URL"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_auditkits_own_run_does_not_collect_the_example():
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    assert not any(p.startswith("examples") for p in settings["ini_options"]["testpaths"])
    assert "testpaths = tests" in (EXAMPLE / "pytest.ini").read_text()


def test_the_example_project_is_green(tmp_path):
    assert not (EXAMPLE / "conftest.py").exists() and not (EXAMPLE / "tests/conftest.py").exists()
    run = _pytest(_project(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"\b2 passed\b", run.stdout), run.stdout


def test_a_broken_copy_fails_naming_the_cell(tmp_path):
    project = _project(tmp_path)
    path = project / "notebooks" / "payments_audit.ipynb"
    notebook = nbformat.read(path, as_version=4)
    broken = "refunded = 2\nraise ValueError(f'{refunded} refunds do not add up')"
    notebook.cells.insert(4, nbformat.v4.new_code_cell(broken))
    nbformat.write(notebook, path)
    run = _pytest(project)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed, 1 passed" in run.stdout
    assert (
        "Notebook `payments_audit.ipynb` failed at cell 4: ValueError: 2 refunds do not add up"
        in run.stdout
    )
    assert "    raise ValueError(f'{refunded} refunds do not add up')" in run.stdout


def test_the_ci_workflow_in_the_docs_runs_the_example(tmp_path):
    text = (ROOT / "docs" / "testing.md").read_text()
    workflow = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.DOTALL)[1])
    steps = workflow["jobs"]["test"]["steps"]
    setup = [s for s in steps if "run" in s and s["run"].startswith(SETUP)]
    assert any("apt-get install -y redis-server" in s["run"] for s in setup)
    assert any('"auditkit[testing]"' in s["run"] for s in setup)
    runs = [s for s in steps if "run" in s and s not in setup]
    assert runs, "the workflow has no test step"
    project = _project(tmp_path)
    for step in runs:
        done = subprocess.run(
            step["run"], shell=True, cwd=project, capture_output=True, text=True, env=_env()
        )
        assert done.returncode == 0, f"{step['name']}: {done.stdout}{done.stderr}"
        assert "passed" in done.stdout


def test_the_committed_sample_is_what_auditkit_sample_cuts(redis_server, r, tmp_path):
    """The sample is made, not written by hand: the incident script, then the CLI."""
    subprocess.run(
        [sys.executable, str(EXAMPLE / "make_incident.py"), redis_server.url],
        check=True,
        timeout=60,
    )
    output = tmp_path / "payments.jsonl"
    envelope = str(EXAMPLE / "payments-envelope.toml")
    cut = [
        *("sample", "payments", "--count", "500", "--output", str(output)),
        *("--envelope", envelope, "--drop", "payload.customer.email"),
        *("--redis-url", redis_server.url),
    ]
    assert main(cut) == 0
    committed, fresh = read_sample(EXAMPLE / "samples/payments.jsonl"), read_sample(output)
    assert fresh.entries == committed.entries
    # Idle times are the moment's: the rest of the group state must be the same.
    assert [{**g, "idle_ms": set(g["idle_ms"])} for g in fresh.groups] == [
        {**g, "idle_ms": set(g["idle_ms"])} for g in committed.groups
    ]
    assert fresh.counters == committed.counters and fresh.privacy == committed.privacy

    def without_idle(sample):
        return [{k: v for k, v in p.items() if k != "idle_ms"} for p in sample.pending]

    assert without_idle(fresh) == without_idle(committed)
    assert "customer1@example.com" not in output.read_text()
    assert all(b"email" not in b"".join(f) for _, f in committed.entries)
    assert json.loads(output.read_text().splitlines()[0])["entries"] == 40
