"""Sloth, Pyrra and OpenSLO documents as slo-engine SLO files (`slo-engine import`).

Pure: the CLI reads the files and writes the results; `import_texts` maps source texts to
the files' contents and lists everything of the sources the files do not carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

import yaml

from slo_engine.importers.common import Document, ImportResult, Issue, split_documents
from slo_engine.importers.openslo import import_openslo, is_openslo
from slo_engine.importers.pyrra import import_pyrra, is_pyrra
from slo_engine.importers.sloth import import_sloth, is_sloth
from slo_engine.importers.writing import fit_tiers, render

SourceFormat = Literal["sloth", "pyrra", "openslo"]
SOURCE_FORMATS: tuple[str, ...] = get_args(SourceFormat)

__all__ = ["SOURCE_FORMATS", "ImportResult", "Issue", "SourceFormat",
           "import_texts", "render"]


def import_texts(fmt: SourceFormat, texts: Iterable[tuple[str, str]],
                 owner: str) -> ImportResult:
    """Import (file name, YAML text) pairs of one source format.

    Sloth files may hold OpenSLO v1alpha documents (Sloth reads them)."""
    result = ImportResult()
    documents: list[Document] = []
    for file, text in texts:
        try:
            documents.extend(split_documents(file, text))
        except yaml.YAMLError as error:
            result.lost(file, "-", "YAML", f"does not parse: {error}".replace("\n", " "))
    openslo: list[Document] = []
    for document in documents:
        body = document.body
        if fmt == "sloth" and is_sloth(body):
            import_sloth(document, owner, result)
        elif fmt == "pyrra" and is_pyrra(body):
            import_pyrra(document, owner, result)
        elif fmt in ("openslo", "sloth") and is_openslo(body):
            openslo.append(document)
        else:
            kind = body.get("kind") if isinstance(body, dict) else type(body).__name__
            version = body.get("apiVersion", body.get("version")) if isinstance(body, dict) \
                else None
            result.lost(document.where, "-", f"document ({version}, {kind})",
                        f"not a {fmt} SLO document; not imported")
    if openslo:
        import_openslo(openslo, owner, result)
    result.services = [service for service in result.services if service.slos]
    fit_tiers(result)
    return result
