"""DatasetId: `<ds>.<table>_v<N>`, parsed once, and every name derived from it.

The id decides the files of a dataset (metadata/, sql/, expectations/), its DAG id, its public
prefix and its staging names; those rules live here and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NAME = r"[a-z][a-z0-9_]*"
_ID_RE = re.compile(rf"^(?P<ds>{NAME})\.(?P<table>{NAME})_v(?P<version>[1-9][0-9]*)$")
_STEM_RE = re.compile(rf"^(?P<table>{NAME})_v(?P<version>[1-9][0-9]*)$")
_NAME_RE = re.compile(rf"^{NAME}$")
DAG_ID_PREFIX = "publish_"


@dataclass(frozen=True, order=True)
class DatasetId:
    dataset: str
    table: str
    version: int

    @classmethod
    def parse(cls, text: str) -> DatasetId:
        """`telemetry_public.page_loads_by_country_v1` -> DatasetId; ValueError saying the form otherwise."""
        m = _ID_RE.match(text)
        if not m:
            raise ValueError(f"not a dataset id: {text!r} (expected <ds>.<table>_v<N>: lowercase letters, digits, "
                             "underscores)")
        return cls(m["ds"], m["table"], int(m["version"]))

    @classmethod
    def from_metadata_path(cls, path: Path) -> DatasetId | None:
        """The id a file metadata/<ds>/<table>_v<N>.yaml declares, or None when misnamed."""
        m = _STEM_RE.match(Path(path).stem)
        ds = Path(path).parent.name
        if not m or not _NAME_RE.match(ds):
            return None
        return cls(ds, m["table"], int(m["version"]))

    def __str__(self) -> str:
        return f"{self.dataset}.{self.stem}"

    @property
    def stem(self) -> str:
        """`<table>_v<N>`: the file name of the declaration, query and expectations, sans suffix."""
        return f"{self.table}_v{self.version}"

    @property
    def dag_id(self) -> str:
        return f"{DAG_ID_PREFIX}{self.dataset}__{self.stem}"

    @property
    def table_path(self) -> str:
        """`<ds>/<table>/v<N>`: the table's path under the public api/v1/tables/."""
        return f"{self.dataset}/{self.table}/v{self.version}"

    @property
    def public_prefix(self) -> str:
        return f"api/v1/tables/{self.table_path}"

    @property
    def staging_name(self) -> str:
        """`<ds>__<table>_v<N>`: a warehouse table name of its own for the dataset's staging."""
        return f"{self.dataset}__{self.stem}"

    def metadata_path(self, project: Path) -> Path:
        return Path(project) / "metadata" / self.dataset / f"{self.stem}.yaml"

    def query_path(self, project: Path) -> Path:
        return Path(project) / "sql" / self.dataset / f"{self.stem}.sql"

    def expectations_path(self, project: Path) -> Path:
        return Path(project) / "expectations" / self.dataset / f"{self.stem}.yaml"
