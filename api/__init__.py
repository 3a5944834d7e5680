"""The feed service (FastAPI over Redis). Not built yet (issue #6)."""
