"""The page's data handling (frontend/src: model, health, markers) under vitest, run as part
of the Python suite so that `make test` covers it."""

from __future__ import annotations

import subprocess

import pytest

from tests.serving.service.conftest import REPO

FRONTEND = REPO / "frontend"


def test_vitest_unit_tests_of_the_page_pass():
    vitest = FRONTEND / "node_modules" / ".bin" / "vitest"
    if not vitest.exists():
        pytest.fail(f"{vitest} is missing: `make setup` installs the page's npm dependencies")
    result = subprocess.run(
        [str(vitest), "run", "--reporter=dot"],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=240,
        env={"CI": "1", "PATH": "/usr/bin:/bin:/usr/local/bin", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "passed" in result.stdout
