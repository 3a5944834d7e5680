"""Lazy package exports: a package names what it exports and from which module, and the module is
imported on first use (``tagger`` and ``scale`` re-export heavy modules: torch, Ray)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package``: ``exports`` maps a name to the module that
    defines it; the first lookup imports it and stores it in the package, so later lookups skip
    this function.

    >>> import types
    >>> pkg = sys.modules.setdefault("_lazy_demo", types.ModuleType("_lazy_demo"))
    >>> getter = lazy_exports("_lazy_demo", {"dumps": "json"})
    >>> getter("dumps") is importlib.import_module("json").dumps and "dumps" in vars(pkg)
    True
    """

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return getattr_
