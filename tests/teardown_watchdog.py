"""A hard limit on each test's teardown.

pytest-timeout stops timing a test once its call has failed (checked with pytest-timeout 2.4, both
methods), so a fixture whose teardown then waits forever — on a gate the failed test never opened,
say — hangs the whole run until CI's own limit, 90 minutes later, with nothing in the log. This
hook gives every teardown TEARDOWN_LIMIT_S seconds; past that it prints every thread's stack and
ends the process, so the run fails in minutes and says where it was stuck."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import sys
import threading
from collections.abc import Generator

import pytest

TEARDOWN_LIMIT_S = float(os.environ.get("RESTYLE_TEARDOWN_LIMIT_S", "90"))


def _give_up(config: pytest.Config, nodeid: str) -> None:
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=False)  # or the stacks go to pytest's capture file, lost
    sys.stderr.write(f"\n{nodeid}: its teardown took over {TEARDOWN_LIMIT_S:g} s; every thread's stack:\n")
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    # A stuck async fixture shows above only as an idle event loop: what its tasks wait on is here.
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]
    for loop in loops:
        for task in asyncio.all_tasks(loop):
            sys.stderr.write(f"{task!r}\n")
            task.print_stack(limit=8, file=sys.stderr)
    sys.stderr.flush()
    os._exit(3)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    timer = threading.Timer(TEARDOWN_LIMIT_S, _give_up, (item.config, item.nodeid))
    timer.daemon = True
    timer.start()
    try:
        return (yield)
    finally:
        timer.cancel()
