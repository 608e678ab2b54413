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
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
"""Errors caused by the user's input. Anything else is a bug and keeps its traceback."""

EXIT_USER_ERROR = 2


def one_line(message: object, limit: int | None = None) -> str:
    """`message` on one line: lines are stripped and joined ("a:\\n  b\\n  c" -> "a: b; c"), cut at `limit` chars."""
    parts = [line.strip() for line in str(message).splitlines() if line.strip()]
    text = ""
    for part in parts:
        text += part if not text else (" " if text.endswith(":") else "; ") + part
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 3)].rstrip() + "..."
    return text


def run_cli(prog: str, body: Callable[[], int | None]) -> int:
    """Run `body`; report a user error as `prog: error: <message>` (one line) and return 2, never a traceback."""
    try:
        return body() or 0
    except USER_ERRORS as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
