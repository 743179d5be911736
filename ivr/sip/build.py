"""What our build of the SIP stack recorded about itself (``pjsua2_build_info``, written by
``sipstack/build.sh`` beside the binding): version, source, call limit, patches.

Reading it does not load pjsua2, so the doctor and ``ivr version`` can tell which build is
installed, or that it is not ours, without starting the stack.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def build_info() -> ModuleType | None:
    """The build's record, or None when the installed pjsua2 is not our build."""
    try:
        return importlib.import_module("pjsua2_build_info")
    except ImportError:
        return None


def build_patches() -> tuple[str, ...]:
    """The patches applied to the pjproject tree, in order (Debian's, then ours)."""
    info = build_info()
    return tuple(getattr(info, "PATCHES", ())) if info is not None else ()


__all__ = ["build_info", "build_patches"]
