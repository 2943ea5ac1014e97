"""The chat bus: the ``ChatBus`` protocol (base), the in-process bus (memory) and the
Redis pub/sub bus (redis). Which one runs is decided by the app's wiring."""
