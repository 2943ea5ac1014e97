"""JSON HTTP API (``/api/v1``), health endpoints and the error middleware."""
