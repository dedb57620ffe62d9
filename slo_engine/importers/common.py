"""What every importer shares: source documents, the fields they use, issues and names.

An importer must account for every field of its source: `Fields` records which keys were
read, and whatever was not read is reported as an issue, so nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import promql_parser
import yaml

from slo_engine.spec.conventions import RESERVED_LABELS

WINDOW = "{{window}}"
_SLOTH_WINDOW = re.compile(r"\{\{\s*\.window\s*\}\}")


@dataclass(frozen=True)
class Document:
    """One YAML document of a source file (`index` counts from 1 within the file)."""

    file: str
    index: int
    body: Any

    @property
    def where(self) -> str:
        return f"{self.file}:{self.index}"


@dataclass(frozen=True)
class Issue:
    """Something of a source document that the written files do not carry, and why."""

    where: str
    slo: str
    what: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.slo}: {self.what}: {self.why}"


@dataclass
class ImportedSLO:
    origin: str
    where: str
    spec: dict[str, Any]


@dataclass
class ImportedService:
    """One slo-engine file to write: service-level keys and the SLOs under them."""

    service: str
    where: str
    head: dict[str, Any]
    slos: list[ImportedSLO] = field(default_factory=list)


@dataclass
class ImportResult:
    services: list[ImportedService] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def service(self, name: str, where: str, head: dict[str, Any]) -> ImportedService:
        """The service `name`, created with `head` on first sight; a later document that
        disagrees on a service-level key keeps the first one's value, and says so."""
        for service in self.services:
            if service.service == name:
                for key, value in head.items():
                    if service.head.get(key) != value:
                        self.issues.append(Issue(
                            where, "-", key, f"differs from service {name}'s first document "
                            f"({service.where}); one file holds one value, kept that one"))
                return service
        service = ImportedService(name, where, {"service": name, **head})
        self.services.append(service)
        return service

    def add(self, service: ImportedService, origin: str, where: str, source_name: str,
            spec: dict[str, Any]) -> None:
        """Add an SLO under a valid, unique name; renames are reported as notes."""
        name = normalise_name(source_name)
        taken = {slo.spec["name"] for slo in service.slos}
        base, n = name, 2
        while name in taken:
            name = f"{base[:60]}-{n}"
            n += 1
        if name != source_name:
            self.notes.append(f"{where}: {source_name}: renamed to {name} "
                              f"(names are unique per service and [a-z0-9-])")
        service.slos.append(ImportedSLO(origin, where, {"name": name, **spec}))

    def lost(self, where: str, slo: str, what: str, why: str) -> None:
        self.issues.append(Issue(where, slo, what, why))


def split_documents(file: str, text: str) -> list[Document]:
    """The non-empty documents of a multi-document YAML text."""
    bodies = yaml.safe_load_all(text)
    return [Document(file, i, body) for i, body in enumerate(bodies, start=1) if body is not None]


class Fields:
    """A mapping of the source whose read keys are remembered, to list the unread ones."""

    def __init__(self, value: Any, path: str, camel: bool = False) -> None:
        self.value: dict[str, Any] = value if isinstance(value, dict) else {}
        self.path = path
        self.camel = camel
        self._read: set[str] = set()
        self._children: list[Fields] = []

    def key(self, name: str) -> str:
        """The source's spelling of a snake_case key (Kubernetes objects use camelCase)."""
        if not self.camel:
            return name
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    def at(self, name: str) -> str:
        return f"{self.path}.{self.key(name)}" if self.path else self.key(name)

    def get(self, name: str, default: Any = None) -> Any:
        key = self.key(name)
        self._read.add(key)
        return self.value.get(key, default)

    def has(self, name: str) -> bool:
        return self.key(name) in self.value

    def child(self, name: str) -> Fields:
        node = Fields(self.get(name), self.at(name), self.camel)
        self._children.append(node)
        return node

    def items(self, name: str, track: bool = True) -> Iterator[Fields]:
        """Each mapping of a list field, as Fields; untracked items report their own
        unread keys (under the SLO they belong to)."""
        values = self.get(name) or []
        for i, value in enumerate(values if isinstance(values, list) else []):
            node = Fields(value, f"{self.at(name)}[{i}]", self.camel)
            if track:
                self._children.append(node)
            yield node

    def unread(self) -> list[str]:
        """Paths of the keys nobody read, here and below."""
        own = [f"{self.path}.{k}" if self.path else k for k in self.value if k not in self._read]
        return own + [path for child in self._children for path in child.unread()]


def unread_issues(node: Fields, where: str, slo: str) -> list[Issue]:
    return [Issue(where, slo, path, "not imported: the importer does not know this field")
            for path in node.unread()]


def normalise_name(text: str) -> str:
    """A slo-engine name ([a-z0-9-], at most 63) for a source name."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")
    return name or "unnamed"


def sloth_window(query: str) -> str:
    """Sloth's and OpenSLO-on-Sloth's `{{.window}}` placeholder as slo-engine's `{{window}}`."""
    return _SLOTH_WINDOW.sub(WINDOW, query)


def percent(value: Any) -> float | None:
    """A percent from a number or a numeric string ('99.5'); None if it is neither."""
    try:
        return float(Decimal(str(value).strip()))
    except (InvalidOperation, ValueError):
        return None


def label_map(value: Any, where: str, slo: str, what: str,
              issues: list[Issue]) -> dict[str, str]:
    """Static labels as strings, leaving out (and listing) the ones the engine sets itself."""
    labels: dict[str, str] = {}
    for name, text in (value or {}).items() if isinstance(value, Mapping) else []:
        if name in RESERVED_LABELS:
            issues.append(Issue(where, slo, f"{what}.{name}",
                                f"'{name}' is a label slo-engine sets on every series itself"))
        else:
            labels[str(name)] = str(text)
    return labels


@dataclass(frozen=True)
class Selector:
    """A parsed instant-vector selector: metric name and matchers in source order."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...]

    def without(self, label: str) -> Selector:
        return Selector(self.metric, tuple(m for m in self.matchers if m[0] != label))

    def value_of(self, label: str) -> str | None:
        return next((m[2] for m in self.matchers if m[0] == label and m[1] == "="), None)

    def braces(self) -> str:
        inner = ", ".join(f"{name}{op}{json.dumps(value, ensure_ascii=False)}"
                          for name, op, value in self.matchers)
        return "{" + inner + "}"

    def text(self) -> str:
        return self.metric + (self.braces() if self.matchers else "")


def parse_selector(text: str) -> Selector | None:
    """The selector in `text`, or None when it is any other PromQL (or does not parse)."""
    try:
        expr = promql_parser.parse(text)
    except ValueError:
        return None
    if not isinstance(expr, promql_parser.VectorSelector) or expr.offset or expr.at:
        return None
    if expr.matchers.or_matchers or not expr.name:
        return None
    matchers = tuple((m.name, str(m)[len(m.name):].split('"', 1)[0], m.value)
                     for m in expr.matchers.matchers if m.name != "__name__")
    return Selector(expr.name, matchers)


def le_duration(le: str) -> str | None:
    """A bucket bound in seconds ('0.05') as a slo-engine duration ('50ms'), if exact."""
    try:
        millis = Decimal(le) * 1000
    except InvalidOperation:
        return None
    if millis <= 0 or millis != millis.to_integral_value():
        return None
    whole = int(millis)
    return f"{whole // 1000}s" if whole % 1000 == 0 else f"{whole}ms"


def promql_problem(query: str) -> str | None:
    """Why a query with `{{window}}` is not PromQL (e.g. VictoriaMetrics' MetricsQL), if so."""
    try:
        promql_parser.parse(query.replace(WINDOW, "5m"))
    except ValueError as error:
        return str(error)
    return None


def rate_query(selector: str, by: list[str] | None = None) -> str:
    """`sum(rate(<selector>[{{window}}]))`, the query shape slo-engine's tests can feed."""
    grouping = f" by ({', '.join(by)})" if by else ""
    return f"sum{grouping}(rate({selector}[{WINDOW}]))"
