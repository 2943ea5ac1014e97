"""Core types every layer may use: the media unit, domain errors and events, rate limiting,
backoff and supervised background tasks. Imports nothing else of LiveCast."""
