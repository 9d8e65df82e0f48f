"""The commands in the OpenAPI document: one `POST /commands/<Name>` operation per command.

One route serves every command (`CommandController`): registering a Litestar route per command made
start-up quadratic in the number of commands (Litestar rebuilds its route map on every registration),
about a minute at the seed's 5,660. The operations are written here instead, from the command types'
own msgspec schemas (the ones the strict parser validates against), and merged into the document
Litestar generates for the other routes, once, when it is first asked for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import MediaType, Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.params import FromPath

from commands.handlers import CommandSpec
from commands.model.wire import CUSTOM_DESCRIPTION
from commands.service import CommandResult
from core.openapi import document_part, tags_of, with_problems
from core.problems import problem
from tenancy.auth import TENANT_SECURITY

PARTS_PATH = "/schema/openapi"

REF = "#/components/schemas/{name}"
ERRORS = (400, 401, 404, 409, 413, 422, 429, 503)
MAX_IDEMPOTENCY_KEY = 200
MAX_PARTS = 64
"""Parts of the document kept rendered (`DocumentWithCommands.part`), the most recently asked."""
MAX_TAGS_SHOWN = 30
"""Tags an unknown part's 404 names (the seed's model has thousands)."""
"""Parts of the document kept rendered (`DocumentWithCommands.part`), the most recently asked."""

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retries with the same key run once. A key is opaque and compared by its exact text "
    "(a UUID and the same UUID upper-cased are two keys).",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
}

CUSTOM_SCHEMA = {
    "title": "Custom",
    "type": "object",
    "description": CUSTOM_DESCRIPTION,
    "additionalProperties": {
        "anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "null"}]
    },
}
"""Every command's `Custom`, once: the account's own attributes, which the document cannot know."""


ERROR_NAMES = {code: HTTPStatus(code).phrase.replace(" ", "").replace("-", "") for code in ERRORS}
"""Each error a command can answer, by its components/responses name (`UnprocessableEntity`)."""
COMPONENTS: dict[str, dict[str, Any]] = {
    # Shared by every command's operation, once: written out per command they made up a fifth of
    # the document at the seed's scale.
    "responses": {
        name: {
            "description": HTTPStatus(code).phrase,
            "content": {"application/problem+json": {"schema": {"$ref": REF.format(name="ProblemDetails")}}},
        }
        for code, name in ERROR_NAMES.items()
    },
    "parameters": {"IdempotencyKey": IDEMPOTENCY_KEY},
}
"""The components the command operations refer to, besides schemas."""


def _json(schema: dict[str, Any], description: str, media_type: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def operation_id(name: str) -> str:
    """`PlaceOrder` is `placeOrder`: a generated client's `place_order`."""
    return name[:1].lower() + name[1:]


def _shared_custom(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    if not properties or "Custom" not in properties:
        return schema
    custom = {"anyOf": [{"$ref": REF.format(name="Custom")}, {"type": "null"}], "default": None}
    return {**schema, "properties": {**properties, "Custom": custom}}


def command_operations(commands: Mapping[str, CommandSpec]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each command's path item, and the component schemas their bodies and answers refer to.

    Each command is tagged with its element (`Order`), so a part of the document is one element's
    commands (`GET /schema/openapi/Order.json`) and a generated client has a module per element."""
    types: Sequence[Any] = [spec.message for spec in commands.values()]
    _, schemas = msgspec.json.schema_components([*types, CommandResult], ref_template=REF)
    schemas = {name: _shared_custom(schema) for name, schema in schemas.items()}
    schemas["Custom"] = CUSTOM_SCHEMA
    responses = {
        "200": _json({"$ref": REF.format(name=CommandResult.__name__)}, "The command's stream and positions"),
        **{str(code): {"$ref": f"#/components/responses/{name}"} for code, name in ERROR_NAMES.items()},
    }
    paths = {
        f"/commands/{spec.name}": {
            "post": {
                "tags": [spec.element or "commands"],
                "summary": spec.name,
                **({"description": spec.description} if spec.description else {}),
                "operationId": operation_id(spec.name),
                "security": TENANT_SECURITY,
                "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(name=spec.message.__name__)}}
                    },
                },
                "responses": responses,
            }
        }
        for spec in commands.values()
    }
    return paths, schemas


class DocumentWithCommands(JsonRenderPlugin):
    """Serves `/schema/openapi.json`: Litestar's document plus every command's operation, every error
    as problem+json; and its parts by tag (`part`)."""

    def __init__(self, commands: Mapping[str, CommandSpec]) -> None:
        super().__init__()
        self._commands = commands
        self._document: dict[str, Any] | None = None
        self._rendered: bytes | None = None
        self._parts: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
        self._tags: list[str] | None = None
        self._lock = threading.RLock()

    def document(self, openapi_schema: dict[str, Any]) -> dict[str, Any]:
        """The whole document, made once."""
        if self._document is None:
            paths, schemas = command_operations(self._commands)
            components = openapi_schema.get("components", {})
            document = {
                **openapi_schema,
                "paths": {**openapi_schema.get("paths", {}), **paths},
                # Litestar's schemas (and any other name it already has) win.
                "components": {
                    **components,
                    **{kind: {**shared, **components.get(kind, {})} for kind, shared in COMPONENTS.items()},
                    # The query results' Custom is the commands' too.
                    "schemas": {
                        **schemas,
                        **{
                            name: _shared_custom(found)
                            for name, found in components.get("schemas", {}).items()
                        },
                    },
                },
            }
            self._document = with_problems(document)
        return self._document

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            self._rendered = msgspec.json.encode(self.document(openapi_schema))
        return self._rendered

    def part(self, openapi_schema: Callable[[], dict[str, Any]], tags: Sequence[str]) -> bytes | None:
        """The operations of these tags and the schemas they use, rendered; None if a tag is unknown.
        `openapi_schema` gives Litestar's document, asked for only if the whole one is not made yet."""
        key = tuple(sorted(set(tags)))
        with self._lock:  # served from threads
            rendered = self._parts.get(key)
            if rendered is not None:
                self._parts.move_to_end(key)
                return rendered
            if not key or not set(key) <= set(self.tags(openapi_schema)):
                return None
            rendered = msgspec.json.encode(document_part(self._whole(openapi_schema), key))
            self._parts[key] = rendered
            if len(self._parts) > MAX_PARTS:
                self._parts.popitem(last=False)
            return rendered

    def tags(self, openapi_schema: Callable[[], dict[str, Any]]) -> list[str]:
        """Every tag of the document, in the order they first appear."""
        if self._tags is None:
            self._tags = tags_of(self._whole(openapi_schema))
        return self._tags

    def _whole(self, openapi_schema: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return self._document if self._document is not None else self.document(openapi_schema())


def parts_route(document: DocumentWithCommands) -> HTTPRouteHandler:
    """`GET /schema/openapi/{Tags}.json`: the part of the document with the operations of these tags
    (comma-separated: `Order,queries`), for a client of part of a big model."""

    # In a thread: the first part asked for makes the whole document (13 s at the seed's scale).
    @get(f"{PARTS_PATH}/{{part:str}}", include_in_schema=False, sync_to_thread=True)
    def part(request: Request[Any, Any, Any], part: FromPath[str]) -> Response[bytes]:
        def schema() -> dict[str, Any]:
            return request.app.openapi_schema.to_schema()

        tags = [tag for tag in part.removesuffix(".json").split(",") if tag]
        rendered = document.part(schema, tags) if part.endswith(".json") else None
        if rendered is None:
            known = document.tags(schema)
            shown = ", ".join(known[:MAX_TAGS_SHOWN]) + (
                f", ... ({len(known)} in all)" if len(known) > MAX_TAGS_SHOWN else ""
            )
            raise problem(
                404,
                f"there is no part {part[:100]!r} of the document: ask for <tags>.json, tags among {shown}",
            )
        return Response(rendered, media_type=MediaType.JSON)

    return part
