"""Versioned schema: one history, each step with a script per dialect.

Append new steps; never edit a released one. Every unique index and named constraint
carries the same name in both dialects, so ``UniqueViolation.constraint`` means the same
whichever backend raised it. The PostgreSQL scripts are prepared by a test against a real
PostgreSQL 15 (tests/test_storage_postgres.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    sqlite: str
    postgresql: str

    def script(self, dialect: str) -> str:
        if dialect == "sqlite":
            return self.sqlite
        if dialect == "postgresql":
            return self.postgresql
        raise ValueError(f"unknown SQL dialect {dialect!r}")


_SQLITE_1 = (
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
        """
)

_SQLITE_2 = (
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
        """
)

# Portable names: a lower-cased username key with a unique index (instead of relying on
# NOCASE), and chat bans with an id of their own (instead of SQLite's rowid) and a named
# unique constraint. The table is rebuilt keeping each ban's rowid as its id, so page
# cursors handed out before the upgrade stay valid.
_SQLITE_3 = """
    ALTER TABLE users ADD COLUMN username_key TEXT NOT NULL DEFAULT '';
    UPDATE users SET username_key = lower(username);
    CREATE UNIQUE INDEX users_username_key ON users(username_key);
    CREATE TABLE chat_bans_v3 (
        id INTEGER PRIMARY KEY,
        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        banned_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL,
        CONSTRAINT chat_bans_room_user_key UNIQUE (room_id, user_id)
    );
    INSERT INTO chat_bans_v3 (id, room_id, user_id, banned_by, created_at)
        SELECT rowid, room_id, user_id, banned_by, created_at FROM chat_bans;
    DROP TABLE chat_bans;
    ALTER TABLE chat_bans_v3 RENAME TO chat_bans;
    CREATE INDEX chat_bans_user ON chat_bans(user_id)
"""

_POSTGRESQL_1 = """
    CREATE TABLE users (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY CONSTRAINT users_pkey PRIMARY KEY,
        username TEXT NOT NULL,
        email TEXT,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CONSTRAINT users_role_check CHECK (role IN ('viewer', 'streamer', 'admin')),
        coins BIGINT NOT NULL DEFAULT 0 CONSTRAINT users_coins_check CHECK (coins >= 0),
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT CONSTRAINT sessions_pkey PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE TABLE rooms (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY CONSTRAINT rooms_pkey PRIMARY KEY,
        slug TEXT NOT NULL CONSTRAINT rooms_slug_key UNIQUE,
        owner_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        title TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        stream_key TEXT NOT NULL,
        stream_key_hash TEXT NOT NULL CONSTRAINT rooms_stream_key_hash_key UNIQUE,
        live INTEGER NOT NULL DEFAULT 0,
        started_at TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX rooms_owner ON rooms(owner_id)
"""

_POSTGRESQL_2 = """
    CREATE TABLE comments (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY CONSTRAINT comments_pkey PRIMARY KEY,
        room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        content TEXT NOT NULL,
        created_at TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX comments_room ON comments(room_id, id);
    CREATE INDEX comments_user ON comments(user_id);
    CREATE TABLE room_chat (
        room_id BIGINT CONSTRAINT room_chat_pkey PRIMARY KEY REFERENCES rooms(id) ON DELETE CASCADE,
        likes BIGINT NOT NULL DEFAULT 0,
        slow_mode_seconds INTEGER NOT NULL DEFAULT 0,
        chat_enabled INTEGER NOT NULL DEFAULT 1,
        max_viewers INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE gifts (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY CONSTRAINT gifts_pkey PRIMARY KEY,
        room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        sender_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        recipient_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        gift TEXT NOT NULL,
        quantity INTEGER NOT NULL CONSTRAINT gifts_quantity_check CHECK (quantity > 0),
        value BIGINT NOT NULL CONSTRAINT gifts_value_check CHECK (value > 0),
        created_at TEXT NOT NULL
    );
    CREATE INDEX gifts_room_sender ON gifts(room_id, sender_id);
    CREATE INDEX gifts_sender ON gifts(sender_id);
    CREATE INDEX gifts_recipient ON gifts(recipient_id);
    CREATE TABLE chat_bans (
        room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        banned_by BIGINT REFERENCES users(id) ON DELETE SET NULL,
        created_at TEXT NOT NULL,
        CONSTRAINT chat_bans_pkey PRIMARY KEY (room_id, user_id)
    );
    CREATE INDEX chat_bans_user ON chat_bans(user_id)
"""

_POSTGRESQL_3 = """
    ALTER TABLE users ADD COLUMN username_key TEXT NOT NULL DEFAULT '';
    UPDATE users SET username_key = lower(username);
    CREATE UNIQUE INDEX users_username_key ON users(username_key);
    ALTER TABLE chat_bans DROP CONSTRAINT chat_bans_pkey;
    ALTER TABLE chat_bans ADD COLUMN id BIGINT GENERATED BY DEFAULT AS IDENTITY CONSTRAINT chat_bans_pkey PRIMARY KEY;
    ALTER TABLE chat_bans ADD CONSTRAINT chat_bans_room_user_key UNIQUE (room_id, user_id)
"""

# Recordings (issue 16): one row per recorded broadcast, its stored segments (a row only once
# the bytes are durably stored) and clips; ``room_recording`` holds a room's own on/off choice
# (absent: the ``recording.enabled`` default).
_RECORDINGS_4 = """
    CREATE TABLE recordings (
        id {id},
        room_id {ref} NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        status TEXT NOT NULL CONSTRAINT recordings_status_check
            CHECK (status IN ('recording', 'complete', 'interrupted')),
        visibility TEXT NOT NULL DEFAULT 'public' CONSTRAINT recordings_visibility_check
            CHECK (visibility IN ('public', 'private')),
        container TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        duration REAL NOT NULL DEFAULT 0,
        bytes {ref} NOT NULL DEFAULT 0,
        gaps INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX recordings_room ON recordings(room_id, id);
    CREATE INDEX recordings_status ON recordings(status);
    CREATE TABLE recording_segments (
        id {id},
        recording_id {ref} NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        object_key TEXT NOT NULL,
        init_key TEXT,
        media_start REAL NOT NULL,
        duration REAL NOT NULL,
        program_date_time REAL NOT NULL,
        bytes {ref} NOT NULL,
        discontinuity INTEGER NOT NULL DEFAULT 0,
        CONSTRAINT recording_segments_seq_key UNIQUE (recording_id, seq)
    );
    CREATE TABLE clips (
        id {id},
        room_id {ref} NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        recording_id {ref} REFERENCES recordings(id) ON DELETE SET NULL,
        user_id {ref} REFERENCES users(id) ON DELETE SET NULL,
        title TEXT NOT NULL DEFAULT '',
        visibility TEXT NOT NULL DEFAULT 'public' CONSTRAINT clips_visibility_check
            CHECK (visibility IN ('public', 'private')),
        media_start REAL NOT NULL,
        duration REAL NOT NULL,
        object_key TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX clips_room ON clips(room_id, id);
    CREATE TABLE room_recording (
        room_id {ref} CONSTRAINT room_recording_pkey PRIMARY KEY REFERENCES rooms(id) ON DELETE CASCADE,
        record INTEGER NOT NULL
    )
"""
_SQLITE_4 = _RECORDINGS_4.format(id="INTEGER PRIMARY KEY", ref="INTEGER")
_POSTGRESQL_4 = _RECORDINGS_4.format(id="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", ref="BIGINT")
# Relay (issue 18): push targets per room (the stream key is stored to be sent, never
# returned), and a room's pull source.
_SQLITE_5 = """
    CREATE TABLE push_targets (
        id INTEGER PRIMARY KEY,
        room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        stream_key TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        verify_tls INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    );
    CREATE INDEX push_targets_room ON push_targets(room_id, id);
    ALTER TABLE rooms ADD COLUMN source_url TEXT NOT NULL DEFAULT '';
    ALTER TABLE rooms ADD COLUMN source_on_demand INTEGER NOT NULL DEFAULT 0
"""

_POSTGRESQL_5 = """
    CREATE TABLE push_targets (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY CONSTRAINT push_targets_pkey PRIMARY KEY,
        room_id BIGINT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        stream_key TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        verify_tls INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    );
    CREATE INDEX push_targets_room ON push_targets(room_id, id);
    ALTER TABLE rooms ADD COLUMN source_url TEXT NOT NULL DEFAULT '';
    ALTER TABLE rooms ADD COLUMN source_on_demand INTEGER NOT NULL DEFAULT 0
"""

# HA (issue 15): who set a room live (a token per live run on one origin), so that only
# that origin's stop clears the flag after another origin took the room over.
_ALL_6 = """
    ALTER TABLE rooms ADD COLUMN live_owner TEXT NOT NULL DEFAULT ''
"""

# Recordings with several origins (issue 16): the node that records each one (its
# cluster.node_url; '' before this step) and when that node last showed it alive, so a node
# closes only its own recordings at start and other nodes' once they have gone quiet. On
# PostgreSQL the times of step 4 become DOUBLE PRECISION (REAL is 4 bytes there: UNIX times
# to the nearest two minutes).
_SQLITE_7 = """
    ALTER TABLE recordings ADD COLUMN node TEXT NOT NULL DEFAULT '';
    ALTER TABLE recordings ADD COLUMN seen_at REAL
"""
_POSTGRESQL_7 = """
    ALTER TABLE recordings ADD COLUMN node TEXT NOT NULL DEFAULT '';
    ALTER TABLE recordings ADD COLUMN seen_at DOUBLE PRECISION;
    ALTER TABLE recordings ALTER COLUMN started_at TYPE DOUBLE PRECISION,
        ALTER COLUMN ended_at TYPE DOUBLE PRECISION, ALTER COLUMN duration TYPE DOUBLE PRECISION;
    ALTER TABLE recording_segments ALTER COLUMN media_start TYPE DOUBLE PRECISION,
        ALTER COLUMN duration TYPE DOUBLE PRECISION, ALTER COLUMN program_date_time TYPE DOUBLE PRECISION;
    ALTER TABLE clips ALTER COLUMN media_start TYPE DOUBLE PRECISION,
        ALTER COLUMN duration TYPE DOUBLE PRECISION, ALTER COLUMN created_at TYPE DOUBLE PRECISION
"""

MIGRATIONS: list[Migration] = [
    Migration(1, _SQLITE_1, _POSTGRESQL_1),
    Migration(2, _SQLITE_2, _POSTGRESQL_2),
    Migration(3, _SQLITE_3, _POSTGRESQL_3),
    Migration(4, _SQLITE_4, _POSTGRESQL_4),
    Migration(5, _SQLITE_5, _POSTGRESQL_5),
    Migration(6, _ALL_6, _ALL_6),
    Migration(7, _SQLITE_7, _POSTGRESQL_7),
]
LATEST = max(m.version for m in MIGRATIONS)
