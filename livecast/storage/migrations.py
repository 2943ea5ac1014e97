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
    (
        2,
        """
        CREATE TABLE comments (
            id INTEGER PRIMARY KEY,
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            content TEXT NOT NULL,
            created_at TEXT NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX comments_room ON comments(room_id, id);
        CREATE INDEX comments_user ON comments(user_id);
        CREATE TABLE room_chat (
            room_id INTEGER PRIMARY KEY REFERENCES rooms(id) ON DELETE CASCADE,
            likes INTEGER NOT NULL DEFAULT 0,
            slow_mode_seconds INTEGER NOT NULL DEFAULT 0,
            chat_enabled INTEGER NOT NULL DEFAULT 1,
            max_viewers INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE gifts (
            id INTEGER PRIMARY KEY,
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            sender_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            recipient_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            gift TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity > 0),
            value INTEGER NOT NULL CHECK (value > 0),
            created_at TEXT NOT NULL
        );
        CREATE INDEX gifts_room_sender ON gifts(room_id, sender_id);
        CREATE INDEX gifts_sender ON gifts(sender_id);
        CREATE INDEX gifts_recipient ON gifts(recipient_id);
        CREATE TABLE chat_bans (
            room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            banned_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (room_id, user_id)
        );
        CREATE INDEX chat_bans_user ON chat_bans(user_id)
        """,
    ),
]
