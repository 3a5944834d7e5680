"""The feed service: FastAPI over a feed store (Redis, or in-memory for tests), real-time events.

``create_app(services, store)`` builds the app; ``clipfeed serve`` wires the world, the models and
the embedded Redis. The API never imports training code at import time.
"""

from api.app import API_VERSION, create_app
from api.store import FeedStore, MemoryStore, RedisStore, StoreUnavailable

__all__ = ["API_VERSION", "FeedStore", "MemoryStore", "RedisStore", "StoreUnavailable", "create_app"]
