"""Reading SLO files: YAML with positions, then the spec models, every mistake located.

PyYAML's composed node tree keeps line and column of every key and value; pydantic reports
errors by field path. Joining the two gives `file:line:column: field.path: message`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from slo_engine.errors import SpecError, SpecIssue, SpecWarning
from slo_engine.spec.document import AlertWindowSets, LabelName, ServiceSpec, SLOSpec, TierSpec
from slo_engine.spec.model import Service, to_model
from slo_engine.spec.validation import check_across, check_service, check_slos, check_warnings

PathKey = tuple[str | int, ...]
Position = tuple[int, int]

SPEC_SUFFIXES = (".yaml", ".yml")

# Limits that keep a hostile or broken file from taking the engine down with it: none comes
# near a real file (the largest example is 4 KB, 8 levels deep, a few aliases), while a
# 446-byte "billion laughs" file of nested aliases would otherwise expand to 10^9 nodes.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64  # nested mappings and lists
MAX_ALIAS_NODES = 100_000  # nodes an alias may repeat, summed over the file


@dataclass
class SpecDocument:
    """One SLO file: its text, its data, and where each key and value sits in it."""

    file: str
    data: Any = None
    value_positions: dict[PathKey, Position] = field(default_factory=dict)
    key_positions: dict[PathKey, Position] = field(default_factory=dict)

    def position(self, path: PathKey, *, key: bool = False) -> Position:
        """The closest known position of `path`: the key itself, its value, or a parent."""
        while True:
            if key and path in self.key_positions:
                return self.key_positions[path]
            if path in self.value_positions:
                return self.value_positions[path]
            if path in self.key_positions:
                return self.key_positions[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def issue(self, path: PathKey, message: str, *, key: bool = False,
              offset: int | None = None) -> SpecIssue:
        line, column = self.position(path, key=key)
        if offset is not None:
            column += offset
        return SpecIssue(self.file, line, column, format_path(path), message)

    def warning(self, path: PathKey, message: str) -> SpecWarning:
        line, column = self.position(path)
        return SpecWarning(self.file, line, column, format_path(path), message)


def format_path(path: PathKey) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """SLO files named on the command line: files as given, directories searched recursively."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES
                                and p.is_file()))
        else:
            found.append(path)
    return found


def display_name(path: Path) -> str:
    """The path as a user and a header should show it: relative to the working directory.
    A symlink loop does not resolve (RuntimeError before Python 3.13): shown as given."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):
        return path.as_posix()


def read_text(path: Path, name: str) -> tuple[str | None, SpecIssue | None]:
    """A YAML file's text, or the located issue saying why it cannot be read. At most
    MAX_FILE_BYTES are read, so a huge file (or /dev/zero named by mistake) costs nothing."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        return None, SpecIssue(name, 1, 1, "", f"cannot read the file: "
                               f"{error.strerror or error}")
    if len(data) > MAX_FILE_BYTES:
        return None, SpecIssue(name, 1, 1, "", f"the file is larger than "
                               f"{MAX_FILE_BYTES // (1024 * 1024)} MiB; split it into one "
                               "file per service")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as error:
        line, column = _line_column(data[:error.start].decode("utf-8", "replace"), None)
        return None, SpecIssue(name, line, column, "", "cannot read the file: it is not "
                               f"UTF-8 (byte 0x{data[error.start]:02x}); save it as UTF-8")


def _line_column(text: str, position: int | None) -> Position:
    """1-based line and column of `position` in `text` (its end when None)."""
    position = len(text) if position is None else position
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def read_yaml_file(path: str | Path, starts_with: str) -> SpecDocument:
    """A YAML file other than an SLO file (config, policy), or SpecError saying how it starts."""
    name = Path(path).as_posix()
    text, problem = read_text(Path(path), name)
    if text is None:
        raise SpecError([problem] if problem else [])
    if not text.strip():
        raise SpecError([SpecIssue(name, 1, 1, "", f"the file is empty; it starts with "
                                   f"{starts_with}")])
    document, issues = parse_yaml(text, name)
    if issues:
        raise SpecError(issues)
    if not isinstance(document.data, dict):
        raise SpecError([document.issue((), f"expected a mapping that starts with {starts_with}")])
    return document


def parse_yaml(text: str, file: str) -> tuple[SpecDocument, list[SpecIssue]]:
    """libyaml's parser when present (the same nodes and marks, 8x faster: 0.05 s against
    0.41 s for the 100 files of the compile bench); a file it rejects is parsed again by
    PyYAML's, whose problem descriptions the hints know."""
    fast: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return _parse(fast, text, file)
        except yaml.MarkedYAMLError as error:
            if "maximum nesting depth" in str(error):  # PyYAML's parser would recurse
                return SpecDocument(file), [_too_deep(file, error.problem_mark)]
        except yaml.YAMLError:
            pass
    try:
        return _parse(yaml.SafeLoader, text, file)
    except yaml.MarkedYAMLError as error:
        mark, message = _yaml_problem(error)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return SpecDocument(file), [SpecIssue(file, line, column, "", message)]
    except yaml.reader.ReaderError as error:
        line, column = _line_column(text, error.position)
        return SpecDocument(file), [SpecIssue(
            file, line, column, "", f"the file holds the control character "
            f"U+{error.character if isinstance(error.character, int) else 0:04X}, which YAML "
            "does not allow; remove it")]
    except RecursionError:
        return SpecDocument(file), [_too_deep(file, None)]
    except yaml.YAMLError as error:
        return SpecDocument(file), [SpecIssue(file, 1, 1, "", f"YAML error: "
                                              f"{' '.join(str(error).split())}")]


def _too_deep(file: str, mark: yaml.Mark | None) -> SpecIssue:
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return SpecIssue(file, line, column, "", f"mappings and lists nest deeper than {MAX_DEPTH} "
                     "levels; an SLO file needs fewer than 10")


class _Refused(Exception):
    """Composing stopped at a limit; carries the located issue to report instead."""

    def __init__(self, issue: SpecIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


@dataclass
class _Expansion:
    """What constructing a file has cost so far: nodes met (an alias meets its anchor's
    node again) and nodes built again through an alias."""

    seen: set[int] = field(default_factory=set)
    aliased: int = 0


def _parse(loader_class: type[yaml.SafeLoader], text: str, file: str) -> tuple[
        SpecDocument, list[SpecIssue]]:
    document = SpecDocument(file)
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return document, [SpecIssue(file, 1, 1, "", "the file is empty; an SLO file starts "
                                        "with 'apiVersion: slo-engine/v1'")]
        issues: list[SpecIssue] = []
        try:
            document.data = _construct(loader, node, (), document, issues, _Expansion(), False)
        except _Refused as refused:
            return SpecDocument(file), [refused.issue]
        return document, issues
    finally:
        loader.dispose()


# PyYAML's problem → how to fix it, for the mistakes people make in SLO files.
_YAML_HINTS = (
    ("mapping values are not allowed here",
     "check this line's indentation, or quote a value that contains ': '"),
    ("found character '\\t'", "indent with spaces, not tabs"),
    ("that cannot start any token", "quote the value"),
    ("expected <block end>", "check the indentation: this line does not line up with the "
     "keys above it"),
    ("expected ',' or", "close the '[' or '{' opened earlier, or quote the value"),
    ("found undefined alias", "quote the value; a '*' at its start makes it a YAML alias"),
)


def _yaml_problem(error: yaml.MarkedYAMLError) -> tuple[yaml.Mark | None, str]:
    """Where a YAML error is and what it means, in the words of someone fixing the file."""
    problem = error.problem or error.context or "invalid YAML"
    if "expected a single document" in str(error):
        return error.problem_mark, ("the file holds more than one YAML document (the second "
                                    "starts here); put each service in its own file")
    if "end of stream" in problem and error.context == "while scanning a quoted scalar":
        return error.context_mark, ("YAML syntax error: the quoted value starting here is "
                                    "never closed; add the closing quote")
    if problem == "could not find expected ':'":
        return error.context_mark or error.problem_mark, (
            "YAML syntax error: expected ':' after this key; write 'key: value'")
    hint = next((h for marker, h in _YAML_HINTS if marker in problem), "check the "
                "indentation and quoting here")
    return error.problem_mark or error.context_mark, f"YAML syntax error: {problem}; {hint}"


def _construct(loader: yaml.SafeLoader, node: yaml.Node, path: PathKey,
               document: SpecDocument, issues: list[SpecIssue], expansion: _Expansion,
               aliased: bool) -> Any:
    """The Python value of `node`, recording positions. Aliases are expanded (a reused tier
    list must be validated where it is used), within MAX_ALIAS_NODES and MAX_DEPTH."""
    if not isinstance(node, yaml.ScalarNode):
        aliased = aliased or id(node) in expansion.seen
        expansion.seen.add(id(node))
    if aliased:
        expansion.aliased += 1
        if expansion.aliased > MAX_ALIAS_NODES:
            raise _Refused(document.issue(path, f"too many aliases: expanding them would build "
                                          f"more than {MAX_ALIAS_NODES:,} values; write the "
                                          "values out, or reuse fewer nested anchors",
                                          key=True))
    if len(path) > MAX_DEPTH:
        raise _Refused(_too_deep(document.file, node.start_mark))
    document.value_positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(SpecIssue(document.file, key_node.start_mark.line + 1,
                                        key_node.start_mark.column + 1, format_path(path),
                                        "a key must be a plain value, not a mapping or list"))
                continue
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            child = (*path, key)
            key_position = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in result:
                first = document.key_positions[child]
                issues.append(SpecIssue(document.file, *key_position, format_path(child),
                                        f"duplicate key {key!r} (first at line {first[0]}); "
                                        "remove one of them"))
                continue
            document.key_positions[child] = key_position
            result[key] = _construct(loader, value_node, child, document, issues, expansion,
                                     aliased)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, (*path, i), document, issues, expansion, aliased)
                for i, item in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str) and isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
        # Offsets into a quoted value start after the quote.
        document.value_positions[path] = (node.start_mark.line + 1, node.start_mark.column + 2)
    return value


def validate_model(document: SpecDocument) -> tuple[ServiceSpec | None, list[SpecIssue]]:
    if not isinstance(document.data, dict):
        return None, [document.issue((), "an SLO file is a mapping that starts with "
                                     "'apiVersion: slo-engine/v1'")]
    try:
        return ServiceSpec.model_validate(document.data), []
    except ValidationError as error:
        return None, model_issues(error, document, ServiceSpec)


_LABELS: TypeAdapter[dict[str, str]] = TypeAdapter(dict[LabelName, str],
                                                   config=ConfigDict(strict=True))


_WINDOWS: TypeAdapter[dict[str, list[TierSpec]]] = TypeAdapter(AlertWindowSets,
                                                                config=ConfigDict(strict=True))


def _well_formed_parts(document: SpecDocument) -> tuple[
        dict[str, str], list[tuple[int, SLOSpec]], dict[str, list[TierSpec]]]:
    """The service labels, the SLOs and the alert window sets of an invalid file that are
    valid on their own."""
    data = document.data
    if not isinstance(data, dict):
        return {}, [], {}
    try:
        labels = _LABELS.validate_python(data.get("labels", {}))
    except ValidationError:
        labels = {}
    try:
        windows = _WINDOWS.validate_python(data.get("alert_windows", {}))
    except ValidationError:
        windows = {}
    slos: list[tuple[int, SLOSpec]] = []
    if isinstance(data.get("slos"), list):
        for index, item in enumerate(data["slos"]):
            try:
                slos.append((index, SLOSpec.model_validate(item)))
            except ValidationError:
                continue
    return labels, slos, windows


def model_issues(error: ValidationError, document: SpecDocument,
                 root: type[BaseModel]) -> list[SpecIssue]:
    """Pydantic's errors for a YAML file as located issues: typos get the field they meant."""
    items = error.errors(include_url=False)
    # A misspelt required field is reported once, as the unknown field with its suggestion.
    suggested: set[PathKey] = set()
    issues: list[SpecIssue] = []
    for item in items:
        loc: PathKey = tuple(p for p in item["loc"] if p != "[key]")
        if item["type"] != "extra_forbidden":
            continue
        parent = loc[:-1]
        unknown = str(loc[-1])
        known = _fields_at(parent, root)
        close = difflib.get_close_matches(unknown, known, n=1)
        if close:
            suggested.add((*parent, close[0]))
        hint = (f"did you mean {close[0]!r}?" if close
                else f"expected one of: {', '.join(known)}")
        issues.append(document.issue(loc, f"unknown field {unknown!r}; {hint}", key=True))
    for item in items:
        loc = tuple(p for p in item["loc"] if p != "[key]")
        kind = item["type"]
        if kind == "extra_forbidden" or (kind == "missing" and loc in suggested):
            continue
        if kind == "missing":
            issue = document.issue(loc[:-1], f"missing required field {loc[-1]!r}"
                                   + _missing_hint(str(loc[-1])))
            issues.append(replace(issue, path=format_path(loc)))
        else:
            message = _message(kind, item["msg"], item.get("input"), _expected_at(loc))
            issues.append(document.issue(loc, message, key="[key]" in item["loc"]))
    return issues


def _expected_at(loc: PathKey) -> str | None:
    """What a string field holding a duration or period expects, for type errors there."""
    if len(loc) < 2 or loc[-2] == "labels":
        return None
    if loc[-1] in ("threshold", "long_window", "short_window"):
        return "a duration with its unit, e.g. 500ms, 5m, 1h"
    if loc[-1] == "period":
        return "a period in days or weeks, e.g. 28d, 30d, 4w"
    return None


_MISSING_HINTS = {
    "apiVersion": "; start the file with 'apiVersion: slo-engine/v1'",
    "objective": "; the target percent of good events, e.g. 'objective: 99.9'",
    "sli": "; give one of 'ratio', 'latency', 'query', 'bool_gauge' or 'error_ratio'",
    "total": "; the selector or query of all valid events",
    "owner": "; the team that owns the service, pages route by it",
    "slos": "; list the service's SLOs under 'slos:'",
}


def _missing_hint(name: str) -> str:
    return _MISSING_HINTS.get(name, "")


_TYPE_NAMES = {
    "string_type": "a string (quote it)",
    "float_type": "a number",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _message(kind: str, default: str, value: Any, expected: str | None = None) -> str:
    if kind == "string_type" and expected is not None:
        return f"expected {expected}, got {_describe(value)}"
    if kind in _TYPE_NAMES:
        message = f"expected {_TYPE_NAMES[kind]}, got {_describe(value)}"
        if kind != "string_type" and isinstance(value, str) and _unquoted_fits(kind, value):
            message += "; remove the quotes"
        return message
    if kind == "literal_error" and "slo-engine/v1" in default:
        return f"unsupported apiVersion {value!r}; write 'apiVersion: slo-engine/v1'"
    if kind == "literal_error":
        return f"got {value!r}; {default[0].lower()}{default[1:]}"
    if kind == "value_error":
        return default.removeprefix("Value error, ")
    if kind == "too_short":
        return "must not be empty"
    if kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        return f"got {value!r}; {default[0].lower()}{default[1:]}"
    return default


def _unquoted_fits(kind: str, text: str) -> bool:
    """Whether `text`, written without quotes, would have had the type `kind` wants. Only a
    short text without anchors is parsed: a quoted value may itself be an alias bomb."""
    if len(text) > 40 or "&" in text or "*" in text:
        return False
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    wanted = {"float_type": (int, float), "int_type": (int,), "bool_type": (bool,)}.get(kind, ())
    if isinstance(value, bool) and kind != "bool_type":
        return False
    return isinstance(value, wanted)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _fields_at(path: PathKey, root: type[BaseModel]) -> list[str]:
    """The field names the model allows at `path`, to suggest the one a typo meant."""
    model = root
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return []
        annotation = info.annotation
        inner = _model_in(annotation)
        if inner is None:
            return []
        model = inner
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def load_services(paths: Iterable[str | Path]) -> list[Service]:
    """Load, validate and model every SLO file under `paths`; raise SpecError with every issue.

    Files of one service (there may be several) become one Service, sources in path order.
    """
    return load_checked(paths)[0]


def load_checked(paths: Iterable[str | Path]) -> tuple[list[Service], list[SpecWarning]]:
    """`load_services`, and the warnings of the files that loaded (sorted) for `validate`
    and `explain` to show; SpecError carries them too when there are errors."""
    paths = list(paths)
    files = discover(paths)
    issues: list[SpecIssue] = []
    warnings: list[SpecWarning] = []
    valid: list[tuple[ServiceSpec, SpecDocument]] = []
    if not files:
        raise SpecError([SpecIssue(", ".join(map(str, paths)) or ".", 1, 1, "",
                                   "no SLO files (*.yaml, *.yml) found")])
    for path in files:
        name = display_name(path)
        text, problem = read_text(path, name)
        if text is None:
            issues.extend([problem] if problem else [])
            continue
        document, found = parse_yaml(text, name)
        issues.extend(found)
        if document.data is None:
            continue
        spec, found = validate_model(document)
        if spec is None:
            # Still check the SLOs that are well-formed, so one typo hides no other mistake.
            issues.extend(found)
            labels, slos, windows = _well_formed_parts(document)
            issues.extend(check_slos(labels, slos, document, windows))
            continue
        found = check_service(spec, document)
        issues.extend(found)
        warnings.extend(check_warnings(spec, document))
        valid.append((spec, document))
    issues.extend(check_across(valid))
    if issues:
        raise SpecError(issues, warnings)
    by_service: dict[str, list[Service]] = {}
    for spec, document in valid:
        by_service.setdefault(spec.service, []).append(to_model(spec, document.file))
    return [merge_service(parts) for _, parts in sorted(by_service.items())], sorted(warnings)


def merge_service(parts: list[Service]) -> Service:
    first = parts[0]
    return Service(
        name=first.name,
        owner=first.owner,
        source_file=", ".join(p.source_file for p in parts),
        slos=tuple(slo for p in parts for slo in p.slos),
        depends_on=tuple(sorted({d for p in parts for d in p.depends_on})),
        namespace=first.namespace,
        rule_labels=first.rule_labels,
    )
