import os
import sys
from pathlib import Path

import pytest

# Test helpers (lightly_refs, server fixtures) live next to the tests.
sys.path.insert(0, str(Path(__file__).parent))

# The CLI's tables honour COLUMNS even on a pipe (sslhub/cli/table.py); the tests read whole cells from the CLI's
# subprocesses, whatever the caller's shell or pytest-xdist's workers (COLUMNS=80) export. test_cli_table sets its own.
os.environ.pop("COLUMNS", None)


@pytest.hookimpl(trylast=True)  # after `-m` has deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`pytest -m gpu` is the run on a GPU machine: there, a missing CUDA device is an error, not quiet skips.
    The default run skips the GPU-only tests through their own skipif."""
    if not config.getoption("markexpr", "") or not any(i.get_closest_marker("gpu") for i in items):
        return
    import torch

    if not torch.cuda.is_available():
        raise pytest.UsageError("pytest -m gpu selects the GPU-only tests, but torch sees no CUDA device here")


@pytest.fixture(scope="module")
def server():
    """A loopback HTTP server whose faults each test sets (tests/fault_servers.py), one per test module."""
    from fault_servers import FaultServer

    s = FaultServer()
    yield s
    s.close()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, online SSLHUB_HOME for one test (no offline switch or download timeout from the caller's shell)."""
    h = tmp_path / "sslhub_home"
    monkeypatch.setenv("SSLHUB_HOME", str(h))
    monkeypatch.delenv("SSLHUB_OFFLINE", raising=False)
    monkeypatch.delenv("SSLHUB_DOWNLOAD_TIMEOUT", raising=False)
    return h
