"""Temporal: the projector pipelines, rebuilds and onboarding as workflows; the operators' projection
endpoints."""
