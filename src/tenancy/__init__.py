"""Tenancy: accounts and API keys, routing to tenant databases, row-level-security sessions, onboarding."""
