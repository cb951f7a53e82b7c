"""The sandbox's persistent anchor: with it, a restarted sandbox serves the same deals."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SandboxAnchor:
    seed: int
    anchor_ms: int  # Unix milliseconds; the newest generated deal is created at this minute


def load_anchor(path: Path) -> SandboxAnchor | None:
    """Return the stored anchor, or None when the file is missing. Raises ValueError for a damaged file."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return SandboxAnchor(seed=int(data["seed"]), anchor_ms=int(data["anchor_ms"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"The sandbox state file {path} is damaged ({exc}): delete it to start afresh.") from None


def save_anchor(path: Path, anchor: SandboxAnchor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"seed": anchor.seed, "anchor_ms": anchor.anchor_ms}) + "\n")
    temporary.replace(path)
