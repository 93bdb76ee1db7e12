"""Dataset declarations: the file model, loading, the validated-declaration cache, the JSON Schema."""

from pubdata.declarations.loader import (
    Declaration,
    DeclarationProblem,
    DeclarationSet,
    declaration_paths,
    load,
    load_all,
    load_declaration,
)
from pubdata.declarations.spec import DEFAULT_MIN_BUCKET_SIZE, DeclarationFile

__all__ = [
    "DEFAULT_MIN_BUCKET_SIZE",
    "Declaration",
    "DeclarationFile",
    "DeclarationProblem",
    "DeclarationSet",
    "declaration_paths",
    "load",
    "load_all",
    "load_declaration",
]
