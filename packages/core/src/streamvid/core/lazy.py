"""Lazy public names of a package (PEP 562): ``from streamvid.core import StreamVidPipeline`` imports the defining
module (and diffusers) only when the name is used, so importing a config or a CLI's argument parser stays cheap.

A package's ``__init__`` declares its public names once, as a table of name -> defining module::

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {"StreamVidPipeline": "streamvid.core.pipeline"})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` exporting ``names`` (public name -> module path)."""
    table = dict(names)

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(table[name]), name)

    def __dir__() -> list[str]:
        return sorted(table)

    return __getattr__, __dir__, sorted(table)
