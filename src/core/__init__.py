"""The foundation every package shares, importing nothing of ours: settings, pools, telemetry, metrics,
problem+json, text, tokens, Redis, Temporal, SQL files, stopping."""
