"""Validated declarations kept between DAG parses, so unchanged YAML is not parsed again.

The dag processor re-parses dags/ every 30 s in a fresh process, and each parse loads every
declaration: YAML parsing was most of that (about 0.8 of 0.9 ms per declaration, see
bench/RESULTS.md). An entry maps the sha256 of a declaration's YAML text to the validated
declaration as JSON, and a hit is validated again by the same strict model (pydantic reads JSON
about 15x faster than PyYAML reads the YAML), so the cache only saves work: any edit to a file is
a miss, failing files are never cached (they re-parse and report the same error), and the whole
cache is keyed by the model's JSON schema and the pipeline version, so a changed model starts
from empty. Best effort: a cache that cannot be read or written is simply not used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from pubdata import __version__
from pubdata.declarations.spec import DeclarationFile

log = logging.getLogger(__name__)
FILE_NAME = "declarations.json"


@lru_cache(maxsize=1)
def model_key() -> str:
    """Changes whenever the declaration model (fields, types, defaults) or the pipeline version does."""
    schema = json.dumps(DeclarationFile.model_json_schema(), sort_keys=True)
    return hashlib.sha256(f"{__version__}\n{schema}".encode()).hexdigest()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SpecCache:
    """One JSON file of {sha256 of YAML text: validated declaration as JSON}."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._entries = self._read()
        self._used: set[str] = set()
        self._added = False

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("key") != model_key() or not isinstance(data.get("entries"), dict):
            return {}
        entries: dict[str, str] = data["entries"]
        return entries

    def get(self, text: str) -> DeclarationFile | None:
        digest = _digest(text)
        cached = self._entries.get(digest)
        if not isinstance(cached, str):
            return None
        try:
            spec = DeclarationFile.model_validate_json(cached)
        except ValidationError:
            return None
        self._used.add(digest)
        return spec

    def put(self, text: str, spec: DeclarationFile) -> None:
        digest = _digest(text)
        self._entries[digest] = spec.model_dump_json()
        self._used.add(digest)
        self._added = True

    def save(self) -> None:
        """Keep the entries this load used (files deleted or edited since drop out); atomic replace."""
        if not self._added and set(self._entries) <= self._used:
            return
        entries = {k: v for k, v in self._entries.items() if k in self._used}
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"key": model_key(), "entries": entries}, fh)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.debug("pubdata: not caching declarations at %s: %s", self.path, exc)
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
