"""Shared pieces of the ERP backend: settings, database pools, telemetry, the app factory and the CLI."""
