"""The OpenAPI document's finishing touches, without a server: JSON Pointers from msgspec's messages,
error responses as the one ProblemDetails, and a part of the document by tag."""

from __future__ import annotations

from typing import Any

import pytest

from core.openapi import document_part, tags_of, with_problems
from core.problems import FieldError, field_error

PROBLEM_REF = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Expected `str`, got `int` - at `$.OrderLines[0].UnitPrice`",
            FieldError("Expected `str`, got `int`", "/OrderLines/0/UnitPrice"),
        ),
        (
            "UnitPrice must be an amount of money; got '1e3' - at `$.OrderLines[12]`",
            FieldError("UnitPrice must be an amount of money; got '1e3'", "/OrderLines/12/UnitPrice"),
        ),
        (
            "Object contains unknown field `Foo` - at `$.OrderLines[0]`",
            FieldError("Object contains unknown field `Foo`", "/OrderLines/0/Foo"),
        ),
        (
            "Object missing required field `OrderId`",
            FieldError("Object missing required field `OrderId`", "/OrderId"),
        ),
        ("Expected `int` - at `$.Custom[...]`", FieldError("Expected `int`", "/Custom")),
        ("Expected `object`, got `array`", FieldError("Expected `object`, got `array`", "")),
        (
            "Object contains unknown field `a/b~c`",
            FieldError("Object contains unknown field `a/b~c`", "/a~1b~0c"),
        ),
    ],
)
def test_a_validation_message_points_at_its_field(message: str, expected: FieldError) -> None:
    assert field_error(message) == expected


def _document() -> dict[str, Any]:
    def op(tag: str, ref: str) -> dict[str, Any]:
        return {
            "tags": [tag],
            "requestBody": {
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}
            },
            "responses": {
                "200": {"description": "ok"},
                # Litestar's own: an inline shape that is not what the API answers.
                "400": {
                    "description": "Bad",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "503": {"description": "Down", "content": {"application/json": {"schema": {"$ref": "#/x"}}}},
                "409": {"$ref": "#/components/responses/Conflict"},  # shared: left as it is
            },
        }

    return {
        "openapi": "3.1.0",
        "paths": {"/a": {"post": op("A", "Outer")}, "/b": {"post": op("B", "Other")}},
        "components": {
            "schemas": {
                "Outer": {"properties": {"Inner": {"$ref": "#/components/schemas/Inner"}}},
                "Inner": {"type": "object"},
                "Other": {"type": "object"},
                "Shared": {"type": "object"},
            },
            "securitySchemes": {"Key": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Conflict": {
                    "description": "Conflict",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Shared"}}},
                }
            },
        },
    }


def test_made_up_error_responses_become_problems() -> None:
    document = with_problems(_document())
    responses = document["paths"]["/a"]["post"]["responses"]
    assert responses["400"] == {"description": "Bad", "content": PROBLEM_REF}
    assert responses["503"]["content"] == {"application/json": {"schema": {"$ref": "#/x"}}}  # a shape of ours
    assert responses["409"] == {"$ref": "#/components/responses/Conflict"}
    schemas = document["components"]["schemas"]
    assert schemas["ProblemDetails"]["properties"]["errors"]["items"] == {
        "$ref": "#/components/schemas/FieldError"
    }


def test_a_part_holds_its_tags_operations_and_the_schemas_they_reach() -> None:
    document = with_problems(_document())
    assert tags_of(document) == ["A", "B"]
    part = document_part(document, ["A"])
    assert list(part["paths"]) == ["/a"]
    assert set(part["components"]["schemas"]) == {"Outer", "Inner", "ProblemDetails", "FieldError", "Shared"}
    assert part["components"]["securitySchemes"] == document["components"]["securitySchemes"]
