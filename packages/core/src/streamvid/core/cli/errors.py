"""User-facing error handling shared by the console scripts: one line on stderr, exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from streamvid.core.checkpoints import CheckpointFormatError, CheckpointMismatchError
from streamvid.core.config import ConfigError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    CheckpointFormatError,
    CheckpointMismatchError,
    FileNotFoundError,
    IsADirectoryError,
    PermissionError,
)
"""Errors caused by the user's input. Anything else is a bug and keeps its traceback."""

EXIT_USER_ERROR = 2


def run_cli(prog: str, body: Callable[[], int | None]) -> int:
    """Run `body`; report a user error as `prog: error: <message>` and return 2 instead of a traceback."""
    try:
        return body() or 0
    except USER_ERRORS as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
