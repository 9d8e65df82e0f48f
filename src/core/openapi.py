"""The OpenAPI document's finishing touches, for any route: errors as problem+json, and parts of it.

Litestar documents a handler's parameter errors as a 400 of its own shape (`status_code`, `detail`,
`extra`), but the API answers every error as `application/problem+json` (`core.problems`): every
error response of the document refers to the one `ProblemDetails` schema instead. A part of the
document (`document_part`) is the operations of some tags and only the schemas they refer to, so a
client for part of a big model is generated from a small document.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from core.problems import problem_schemas

PROBLEM_JSON = "application/problem+json"
REF = "#/components/schemas/{name}"
METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def operations(document: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each operation of the document: its path, method and operation object."""
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(name="ProblemDetails")}}},
    }


def with_problems(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the ProblemDetails schema (and its FieldError) defined once, and every error
    response that Litestar made up (an inline schema of its own) answered by it instead."""
    paths: dict[str, Any] = {}
    for path, item in document.get("paths", {}).items():
        paths[path] = {
            method: _problems_in(operation) if method in METHODS else operation
            for method, operation in item.items()
        }
    components = document.get("components", {})
    schemas = {**components.get("schemas", {}), **problem_schemas()}
    return {**document, "paths": paths, "components": {**components, "schemas": schemas}}


def _problems_in(operation: dict[str, Any]) -> dict[str, Any]:
    responses = dict(operation.get("responses", {}))
    for code, response in responses.items():
        if not code.isdigit() or int(code) < 400 or "$ref" in response:  # a shared response of ours
            continue
        content = response.get("content") or {}
        if PROBLEM_JSON in content:
            content = {PROBLEM_JSON: content[PROBLEM_JSON]}
        if PROBLEM_JSON in content or any("$ref" in media.get("schema", {}) for media in content.values()):
            # Ours: problem+json, or a documented shape of its own (GET /health's 503).
            responses[code] = {**response, "content": content}
            continue
        responses[code] = problem_response(response.get("description") or "Error")
    return {**operation, "responses": responses}


def tags_of(document: Mapping[str, Any]) -> list[str]:
    """Every tag an operation of the document has, in the order they first appear."""
    seen: dict[str, None] = {}
    for _, _, operation in operations(document):
        for tag in operation.get("tags", ()):
            seen.setdefault(tag, None)
    return list(seen)


def document_part(document: Mapping[str, Any], tags: Iterable[str]) -> dict[str, Any]:
    """The operations of `document` with any of `tags`, and only the component schemas they refer to
    (transitively); its security schemes, info and the rest as they are."""
    wanted = set(tags)
    paths: dict[str, Any] = {}
    for path, method, operation in operations(document):
        if wanted.intersection(operation.get("tags", ())):
            paths.setdefault(path, {})[method] = operation
    schemas = document.get("components", {}).get("schemas", {})
    others = {kind: found for kind, found in document.get("components", {}).items() if kind != "schemas"}
    kept: dict[str, Any] = {}
    pending = [*_refs(paths), *_refs(others)]  # shared responses and parameters refer to schemas too
    while pending:
        name = pending.pop()
        if name in kept or name not in schemas:
            continue
        kept[name] = schemas[name]
        pending.extend(_refs(schemas[name]))
    components = {**document.get("components", {}), "schemas": dict(sorted(kept.items()))}
    part = {**document, "paths": paths, "components": components}
    if "tags" in document:
        part["tags"] = [tag for tag in document["tags"] if tag.get("name") in wanted]
    return part


_PREFIX = REF.format(name="")


def _refs(value: Any) -> Iterator[str]:
    """The component schemas `value` refers to, directly."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith(_PREFIX):
                yield ref[len(_PREFIX) :]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
