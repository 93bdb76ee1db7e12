"""Validated declarations kept between DAG parses, so unchanged YAML is not parsed again.

Every parse loads every declaration: YAML parsing was most of that (about 0.8 of 0.9 ms per
declaration, see bench/RESULTS.md). An entry maps the sha256 of a declaration's YAML text to the
validated declaration as JSON, and a hit is validated again by the same strict model (pydantic
reads JSON about 15x faster than PyYAML reads the YAML), so the cache only saves work: any edit to
a file is a miss, failing files are never cached (they re-parse and report the same error), and
the whole cache is keyed by the model's JSON schema and the pipeline version, so a changed model
starts from empty (parse_cache).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from pubdata import __version__
from pubdata.declarations.spec import DeclarationFile
from pubdata.parse_cache import DigestCache, digest

FILE_NAME = "declarations.json"


@lru_cache(maxsize=1)
def model_key() -> str:
    """Changes whenever the declaration model (fields, types, defaults) or the pipeline version does."""
    schema = json.dumps(DeclarationFile.model_json_schema(), sort_keys=True)
    return hashlib.sha256(f"{__version__}\n{schema}".encode()).hexdigest()


class SpecCache(DigestCache):
    """{digest of YAML text: validated declaration as JSON}."""

    def __init__(self, path: Path):
        super().__init__(path, model_key())

    def get(self, text: str) -> DeclarationFile | None:
        cached = self.get_text(digest(text))
        if cached is None:
            return None
        try:
            return DeclarationFile.model_validate_json(cached)
        except ValidationError:
            return None

    def put(self, text: str, spec: DeclarationFile) -> None:
        self.put_text(digest(text), spec.model_dump_json())
