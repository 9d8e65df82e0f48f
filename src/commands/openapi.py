"""The commands in the OpenAPI document: one `POST /commands/<Name>` operation per command.

One route serves every command (`CommandController`): registering a Litestar route per command made
start-up quadratic in the number of commands (Litestar rebuilds its route map on every registration),
about a minute at the seed's 5,660. The operations are written here instead, from the command types'
own msgspec schemas (the ones the strict parser validates against), and merged into the document
Litestar generates for the other routes, once, when it is first asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin

from commands.handlers import CommandSpec
from commands.service import CommandResult

REF = "#/components/schemas/{name}"
ERRORS = (400, 401, 404, 409, 413, 422, 429, 503)
MAX_IDEMPOTENCY_KEY = 200

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Retries with the same key run once. A key is opaque and compared by its exact text "
    "(a UUID and the same UUID upper-cased are two keys).",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
}


def _json(schema: dict[str, Any], description: str, media_type: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def command_operations(commands: Mapping[str, CommandSpec]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each command's path item, and the component schemas their bodies and answers refer to."""
    types: Sequence[Any] = [spec.message for spec in commands.values()]
    _, schemas = msgspec.json.schema_components([*types, CommandResult], ref_template=REF)
    problem = {"$ref": REF.format(name="ProblemDetails")}
    responses = {
        "200": _json({"$ref": REF.format(name=CommandResult.__name__)}, "The command's stream and positions"),
        **{str(code): _json(problem, HTTPStatus(code).phrase, "application/problem+json") for code in ERRORS},
    }
    paths = {
        f"/commands/{spec.name}": {
            "post": {
                "tags": ["commands"],
                "summary": spec.name,
                **({"description": spec.description} if spec.description else {}),
                "operationId": spec.name,
                "parameters": [IDEMPOTENCY_KEY],
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
    """Serves `/schema/openapi.json`: Litestar's document plus every command's operation."""

    def __init__(self, commands: Mapping[str, CommandSpec]) -> None:
        super().__init__()
        self._commands = commands
        self._rendered: bytes | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            paths, schemas = command_operations(self._commands)
            components = openapi_schema.get("components", {})
            document = {
                **openapi_schema,
                "paths": {**openapi_schema.get("paths", {}), **paths},
                # Litestar's ProblemDetails (and any other name it already has) wins.
                "components": {**components, "schemas": {**schemas, **components.get("schemas", {})}},
            }
            self._rendered = self.render_json(request, document)
        return self._rendered
