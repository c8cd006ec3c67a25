"""Optional dependencies: a clear ImportError naming the pip extra that installs them."""

from __future__ import annotations

import importlib

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional package a feature needs is not installed (or cannot be imported)."""


def require(feature: str, extra: str, *modules: str) -> None:
    """Import ``modules``; if any is missing raise :class:`MissingExtraError` saying that
    ``feature`` needs them and that ``pip install "interlace[extra]"`` installs them."""
    missing, broken = [], []
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as ex:
            if ex.name is not None and ex.name != name and not name.startswith(f"{ex.name}."):
                broken.append(f"{name} ({ex})")  # installed, but one of its own imports is missing
            else:
                missing.append(name)
        except ImportError as ex:
            broken.append(f"{name} ({ex})")
    if not missing and not broken:
        return
    fix = f'pip install "interlace[{extra}]"'
    if missing:
        what = " and ".join(missing)
        verb = "is" if len(missing) == 1 else "are"
        raise MissingExtraError(f"{feature} needs {what}, which {verb} not installed: {fix}")
    raise MissingExtraError(
        f"{feature} needs {', '.join(broken)}, which cannot be imported; reinstall: {fix}"
    )
