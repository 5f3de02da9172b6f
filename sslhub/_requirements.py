"""Version gaps reported as such: a feature that needs a newer dependency says which package and which version,
instead of failing somewhere below with an ``AttributeError`` or ``ImportError`` that reads like a bad file.

The declared floors (``pyproject.toml``) are the versions the fast test subset passes with (``make floors``); these
checks catch environments that ignore them (``--no-deps`` installs, pinned images).
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

from sslhub.errors import SslhubError

__all__ = ["DependencyError", "installed_version", "release_tuple", "require"]


class DependencyError(SslhubError, ImportError):
    """An installed dependency is too old (or missing) for what was asked; the message names the version needed."""


def installed_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None when it is not installed."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def release_tuple(v: str) -> tuple[int, ...]:
    """The release numbers of a version string: ``"2.5.0+cpu"`` -> ``(2, 5, 0)``; ``()`` when it has none."""
    m = re.match(r"\d+(?:\.\d+)*", v)
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


def require(dist: str, minimum: str, what: str) -> None:
    """Raise :class:`DependencyError` unless ``dist >= minimum`` is installed.

    Args:
        dist: the distribution name as pip knows it (``torch``, ``huggingface_hub``).
        minimum: the lowest version that has what is needed.
        what: what needs it, for the message (``"reading .pth/.ckpt files"``).
    """
    have = installed_version(dist)
    if have is not None and release_tuple(have) >= release_tuple(minimum):
        return
    found = f"installed: {have}" if have else "not installed"
    raise DependencyError(f"{what} needs {dist} >= {minimum} ({found}); upgrade it: pip install -U '{dist}>={minimum}'")
