"""Reading a JSON file the user points lmk at (a weights manifest, an LJSON annotation, a
layout sidecar): a missing, unreadable or malformed file is one error line that names the
file and what it should have been, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmk.core.errors import LmkError


def read_json_file(path: Path, what: str) -> Any:
    """The parsed contents of ``path``; ``what`` (with its article: ``"an LJSON file"``) is
    what the file should be, for the error line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LmkError(f"file not found: {path} (expected {what})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LmkError(f"{path}: not {what} ({exc})") from None
