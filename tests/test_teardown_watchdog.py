"""The teardown limit of tests/teardown_watchdog.py: a hanging teardown after a failed test ends
the run with the stuck stack instead of hanging it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HANGING = '''
import asyncio, pytest

@pytest.fixture
async def never_released():
    yield
    await asyncio.Event().wait()  # a gate the failed test never opened

async def test_fails_and_its_teardown_hangs(never_released):
    assert False
'''


def test_a_teardown_that_hangs_after_a_failed_test_ends_the_run_with_its_stack(tmp_path):
    (tmp_path / "conftest.py").write_text("from tests.teardown_watchdog import pytest_runtest_teardown  # noqa: F401\n")
    (tmp_path / "test_hangs.py").write_text(textwrap.dedent(HANGING))
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\ntimeout = 60\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RESTYLE_TEARDOWN_LIMIT_S": "2"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "test_hangs.py::test_fails_and_its_teardown_hangs: its teardown took over 2 s" in done.stderr
    assert "Current thread" in done.stderr and "async_finalizer" in done.stderr  # the stacks: where it was stuck
