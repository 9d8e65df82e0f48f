"""Which commands exist: all of the ERP model's, with their wire types and generated handlers."""

from __future__ import annotations

from commands.erp_model import ERP
from commands.handlers import CommandSpec, command_specs

COMMANDS: dict[str, CommandSpec] = command_specs(ERP)
