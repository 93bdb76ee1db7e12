"""Results kept between DAG parses, keyed by the sha256 of the text they were computed from.

The dag processor re-parses dags/ every 30 s in a fresh process, and every parse needs what only
slow work can tell: the validated declaration (YAML + pydantic) and the verdict of the static
checks (sqlglot over the reviewed query). A cache file maps the digest of the inputs to the result
as JSON, under a key of everything else the result depends on (the pipeline's code and version),
so any edit to an input is a miss and a changed rule or model starts from empty. Best effort: a
cache that cannot be read or written is simply not used, and a miss only costs the slow work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def digest(*texts: str) -> str:
    """sha256 of the texts, each length-prefixed so no two different tuples share a digest."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        h.update(f"{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


class DigestCache:
    """One JSON file of {digest: result as JSON text}, valid only under `key`."""

    def __init__(self, path: Path, key: str):
        self.path = Path(path)
        self.key = key
        self._entries = self._read()
        self._used: set[str] = set()
        self._added = False

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("key") != self.key or not isinstance(data.get("entries"), dict):
            return {}
        entries: dict[str, str] = data["entries"]
        return entries

    def get_text(self, key: str) -> str | None:
        cached = self._entries.get(key)
        if not isinstance(cached, str):
            return None
        self._used.add(key)
        return cached

    def put_text(self, key: str, value: str) -> None:
        self._entries[key] = value
        self._used.add(key)
        self._added = True

    def save(self) -> None:
        """Keep the entries this parse used (inputs deleted or edited since drop out); atomic replace."""
        if not self._added and set(self._entries) <= self._used:
            return
        entries = {k: v for k, v in self._entries.items() if k in self._used}
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"key": self.key, "entries": entries}, fh)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.debug("pubdata: not caching at %s: %s", self.path, exc)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def code_key(*packages: str) -> str:
    """A digest of the pipeline's version and the source of the given modules or packages of pubdata.

    Reading a few dozen small files costs well under a millisecond per parse; it makes sure a rule
    changed without a version bump (a development checkout, a hotfix) is never answered from the cache.
    """
    from pubdata import __version__

    root = Path(__file__).resolve().parent
    texts = [__version__]
    for name in packages:
        path = root / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
        for file in files:
            try:
                texts.append(f"{file.relative_to(root)}\n{file.read_text(encoding='utf-8')}")
            except OSError:
                texts.append(f"{file.relative_to(root)}\n<unreadable>")
    return digest(*texts)
