import sys
from pathlib import Path

import pytest

# Test helpers (lightly_refs, server fixtures) live next to the tests.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.hookimpl(trylast=True)  # after `-m` has deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`pytest -m gpu` is the run on a GPU machine: there, a missing CUDA device is an error, not quiet skips.
    The default run skips the GPU-only tests through their own skipif."""
    if not config.getoption("markexpr", "") or not any(i.get_closest_marker("gpu") for i in items):
        return
    import torch

    if not torch.cuda.is_available():
        raise pytest.UsageError("pytest -m gpu selects the GPU-only tests, but torch sees no CUDA device here")
