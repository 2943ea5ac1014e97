"""Versioned schema. Append new (version, script) pairs; never edit a released one."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            email TEXT,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('viewer', 'streamer', 'admin')),
            coins INTEGER NOT NULL DEFAULT 0 CHECK (coins >= 0),
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );
        CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE INDEX sessions_user ON sessions(user_id);
        CREATE TABLE rooms (
            id INTEGER PRIMARY KEY,
            slug TEXT NOT NULL UNIQUE,
            owner_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            title TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            stream_key TEXT NOT NULL,
            stream_key_hash TEXT NOT NULL UNIQUE,
            live INTEGER NOT NULL DEFAULT 0,
            started_at TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX rooms_owner ON rooms(owner_id)
        """,
    ),
]
