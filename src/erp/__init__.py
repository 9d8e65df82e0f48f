"""The entry points: the composition root, the app factory, the CLI, the worker entry, the bench and the
migrations. Nothing below imports this package."""
