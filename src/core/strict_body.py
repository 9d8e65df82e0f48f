"""`StrictBody`: a Litestar handler's JSON `data` decoded by `core.bodies.decode`, documented as before.

Litestar decodes a `data: T` body itself and then converts it loosely (`"10"` becomes 10), and a
deeply nested body made its decoder recurse into a 500. With `dto=StrictBody[T]` the handler's body
goes through the one strict decoder every command body goes through (the depth limit, 400 for what
is not JSON, 422 naming the field), and the OpenAPI document still shows `T` as the request body,
as Litestar's own schema for it (a component, referenced), so nothing about the document changes.

    @post("/", dto=StrictBody[DefineAttribute], return_dto=None)
    async def define(self, data: DefineAttribute) -> ...
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from litestar.dto import AbstractDTO
from litestar.openapi.spec import Operation, RequestBody
from litestar.typing import FieldDefinition

from core.bodies import decode

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.dto._backend import DTOBackend
    from litestar.dto.data_structures import DTOFieldDefinition
    from litestar.openapi.spec import Reference, Schema

T = TypeVar("T")


class StrictBody(AbstractDTO[T]):
    """Decodes the body strictly into `T`; nothing else of Litestar's DTO machinery is used."""

    def decode_bytes(self, value: bytes) -> Any:
        return decode(value, self.model_type)

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        raise TypeError("StrictBody reads JSON bodies only")

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: type[DTOBackend] | None = None
    ) -> None:
        """Nothing to prepare: `decode` needs only the type."""

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        """The schema Litestar gives `T` without a DTO."""
        return schema_creator.for_field_definition(field_definition)

    @classmethod
    def generate_field_definitions(cls, model_type: type[Any]) -> Generator[DTOFieldDefinition, None, None]:
        yield from ()

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False


class OptionalStrictBody(StrictBody[T]):
    """`StrictBody` for a body that may be left out: none (or only whitespace) is `None`, and the
    OpenAPI document shows the body as optional.

    @post("/", dto=OptionalStrictBody[RebuildRequest], return_dto=None,
          operation_class=OptionalBodyOperation)
    async def rebuild(self, data: RebuildRequest | None = None) -> ...
    """

    def decode_bytes(self, value: bytes) -> Any:
        return None if not value.strip() else decode(value, self.model_type)

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        """`T`'s schema, not `T | None`'s: leaving the body out is what makes it absent
        (`OptionalBodyOperation` documents it as not required)."""
        return schema_creator.for_field_definition(FieldDefinition.from_annotation(cls.model_type))


@dataclass
class OptionalBodyOperation(Operation):
    """An operation whose request body may be left out (`operation_class=` beside OptionalStrictBody)."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False
