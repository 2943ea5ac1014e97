"""Settings: typed dataclasses loaded from defaults < TOML file < LIVECAST_* env < CLI flags.

Every setting has a dotted name (``section.key``); its environment variable is
``LIVECAST_SECTION_KEY`` (upper case), e.g. ``LIVECAST_SERVER_HTTP_PORT=9000``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """A setting has a bad value or an unknown name."""


@dataclass
class ServerSettings:
    host: str = "0.0.0.0"
    http_port: int = 8080
    rtmp_port: int = 1935
    data_dir: str = "./data"
    role: str = "origin"
    origin: str = ""
    public_url: str = ""
    shutdown_timeout: float = 10.0
    max_body_bytes: int = 64 * 1024
    uvloop: bool = True
    demo: bool = False
    trusted_proxies: list[str] = field(default_factory=list)
    allowed_origins: list[str] = field(default_factory=list)
    keepalive_timeout: float = 20.0
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 100


@dataclass
class AuthSettings:
    bcrypt_rounds: int = 12
    session_ttl_hours: float = 24 * 14
    default_role: str = "streamer"
    signup_coins: int = 100
    login_attempts_per_client: int = 10
    login_attempts_per_user: int = 5
    login_window_seconds: float = 60.0
    cookie_secure: bool = False
    login_requests_per_client: int = 60
    register_per_address: int = 5
    register_window_seconds: float = 600.0
    bcrypt_workers: int = 2
    bcrypt_queue: int = 32


@dataclass
class IngestSettings:
    max_publishers: int = 100
    handshake_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_chunk_size: int = 0xFFFFFF
    max_message_bytes: int = 16 * 1024 * 1024
    max_chunk_streams: int = 64
    ack_window: int = 2_500_000
    max_partial_bytes: int = 32 * 1024 * 1024
    auth_timeout: float = 10.0
    preauth_max_bytes: int = 64 * 1024
    preauth_max_message_bytes: int = 64 * 1024
    preauth_max_partial_streams: int = 4
    max_pending: int = 256
    max_pending_per_address: int = 8
    output_queue_units: int = 1000
    output_queue_bytes: int = 4 * 1024 * 1024


@dataclass
class HlsSettings:
    container: str = "mpegts"
    segment_duration: float = 2.0
    window: int = 6
    grace_segments: int = 6
    reconnect_grace: float = 30.0
    max_stream_bytes: int = 256 * 1024 * 1024
    max_total_bytes: int = 2 * 1024 * 1024 * 1024
    write_through: bool = False
    low_latency: bool = False
    part_target: float = 0.2


@dataclass
class ChatSettings:
    bus: str = ""
    history: int = 50
    max_frame_bytes: int = 4096
    max_comment_chars: int = 500
    rate_count: int = 5
    rate_seconds: float = 5.0
    send_queue: int = 256
    max_errors: int = 20
    max_sockets_per_address: int = 10
    frames_per_second: float = 20.0
    frame_burst: int = 60
    abuse_block_seconds: float = 30.0
    comment_retention_days: float = 90.0
    max_comments_per_room: int = 10000
    prune_interval: float = 300.0


@dataclass
class Gift:
    name: str
    display_name: str
    price: int


def _default_gifts() -> list[Gift]:
    return [
        Gift("heart", "Heart", 1),
        Gift("rose", "Rose", 5),
        Gift("star", "Star", 20),
        Gift("rocket", "Rocket", 100),
    ]


@dataclass(frozen=True)
class RenditionSpec:
    """One rung of the transcoding ladder (``[[transcode.renditions]]``)."""

    name: str
    height: int
    video_bitrate: int  # bits per second
    fps: float | None = None  # None: the source's
    preset: str = "veryfast"


def _default_renditions() -> list[RenditionSpec]:
    return [RenditionSpec("480p", 480, 1_200_000), RenditionSpec("240p", 240, 400_000)]


@dataclass
class TranscodeSettings:
    enabled: bool = False
    renditions: list[RenditionSpec] = field(default_factory=_default_renditions)
    encoder: str = "libx264"  # or h264_nvenc, h264_vaapi, h264_qsv when FFmpeg offers them
    encoder_threads: int = 0  # per rendition; 0: FFmpeg picks
    max_lag: float = 3.0  # seconds a rendition may run behind the source before it is dropped
    restart_limit: int = 5  # worker restarts per publish session before the ladder gives up
    thumbnail_interval: float = 10.0


@dataclass
class ClusterSettings:
    secret: str = ""
    node_url: str = ""
    heartbeat_interval: float = 2.0
    heartbeat_timeout: float = 7.0
    cache_bytes: int = 512 * 1024 * 1024
    upstream_timeout: float = 4.0
    upstream_connections: int = 64
    redis: str = ""
    lease_seconds: float = 5.0


@dataclass
class TlsSettings:
    cert: str = ""
    key: str = ""
    rtmps_port: int = 1936
    hsts_max_age: int = 31536000


def _no_urls() -> list[str]:
    return []


@dataclass
class WebhookSettings:
    urls: list[str] = field(default_factory=_no_urls)
    secret: str = ""
    queue_size: int = 1000
    max_attempts: int = 5
    timeout: float = 5.0
    backoff: float = 1.0
    on_publish: str = ""
    on_publish_timeout: float = 2.0
    on_publish_fail_open: bool = False


@dataclass
class DatabaseSettings:
    url: str = ""
    pool_size: int = 10
    connect_timeout: float = 5.0
    statement_timeout: float = 30.0


@dataclass
class RoomsSettings:
    max_per_user: int = 20


@dataclass
class RelaySettings:
    max_targets_per_room: int = 5
    queue_units: int = 1000
    queue_bytes: int = 8 * 1024 * 1024
    connect_timeout: float = 10.0
    retry_first: float = 1.0
    retry_max: float = 30.0
    idle_seconds: float = 30.0
    send_buffer_bytes: int = 0
    push_batch_seconds: float = 0.2


@dataclass
class LogSettings:
    level: str = "info"
    format: str = "text"


@dataclass
class MetricsSettings:
    per_room: bool = True


@dataclass
class RecordingSettings:
    enabled: bool = False  # a room's default; the room's own choice wins
    storage: str = ""  # "" = <data_dir>/recordings; or "s3://bucket/prefix"
    min_free_bytes: int = 1024 * 1024 * 1024
    queue_segments: int = 30
    upload_attempts: int = 5
    upload_backoff: float = 0.5
    signed_url_ttl: int = 3600
    chat_replay_max: int = 5000
    download_workers: int = 1
    dvr_window: float = 7200.0
    max_age_days: float = 0.0
    max_bytes: int = 0
    max_room_bytes: int = 0
    retention_interval: float = 300.0
    max_clip_seconds: int = 120
    clips_per_minute: int = 6
    stale_after: float = 120.0  # another node's recording not seen alive this long is interrupted


@dataclass
class S3Settings:
    endpoint: str = ""
    region: str = "us-east-1"
    access_key: str = ""
    secret_key: str = ""


@dataclass
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    hls: HlsSettings = field(default_factory=HlsSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    gifts: list[Gift] = field(default_factory=_default_gifts)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    log: LogSettings = field(default_factory=LogSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    rooms: RoomsSettings = field(default_factory=RoomsSettings)
    transcode: TranscodeSettings = field(default_factory=TranscodeSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    relay: RelaySettings = field(default_factory=RelaySettings)

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def db_path(self) -> Path:
        return self.data_path / "livecast.db"

    def validate(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.server.role in ("origin", "edge"), "server.role must be 'origin' or 'edge'"),
            (self.server.role != "edge" or bool(self.server.origin), "server.origin is required for role edge"),
            (self.server.role != "edge" or bool(self.cluster.secret), "cluster.secret is required for role edge"),
            (self.server.role != "edge" or all(u.strip().startswith(("http://", "https://"))
                                               for u in self.server.origin.split(",")),
             "server.origin must be an http:// or https:// URL (or several, comma-separated)"),
            (0 < self.cluster.heartbeat_interval < self.cluster.heartbeat_timeout,
             "cluster.heartbeat_interval must be > 0 and below cluster.heartbeat_timeout"),
            (self.cluster.cache_bytes >= 1024 * 1024, "cluster.cache_bytes must be >= 1 MiB"),
            (0 < self.cluster.upstream_timeout <= 60, "cluster.upstream_timeout must be 0..60 s"),
            (self.cluster.upstream_connections >= 1, "cluster.upstream_connections must be >= 1"),
            (0.05 <= self.hls.part_target <= 1.0, "hls.part_target must be 0.05..1 s"),
            (not self.hls.low_latency or self.hls.part_target * 3 <= self.hls.segment_duration,
             "hls.part_target must be at most a third of hls.segment_duration"),
            (0 <= self.server.http_port < 65536, "server.http_port out of range"),
            (0 <= self.server.rtmp_port < 65536, "server.rtmp_port out of range"),
            (4 <= self.auth.bcrypt_rounds <= 31, "auth.bcrypt_rounds must be 4..31"),
            (self.auth.default_role in ("viewer", "streamer", "admin"), "auth.default_role is not a role"),
            (self.hls.container in ("mpegts", "fmp4"), "hls.container must be 'mpegts' or 'fmp4'"),
            (0.5 <= self.hls.segment_duration <= 30, "hls.segment_duration must be 0.5..30 s"),
            (2 <= self.hls.window <= 100, "hls.window must be 2..100"),
            (128 <= self.ingest.max_chunk_size <= 0xFFFFFF, "ingest.max_chunk_size must be 128..16777215"),
            (self.ingest.max_partial_bytes >= self.ingest.max_message_bytes,
             "ingest.max_partial_bytes must be >= ingest.max_message_bytes"),
            (self.ingest.auth_timeout > 0, "ingest.auth_timeout must be > 0"),
            (self.ingest.preauth_max_bytes >= 8192, "ingest.preauth_max_bytes must be >= 8192"),
            (1024 <= self.ingest.preauth_max_message_bytes <= self.ingest.preauth_max_bytes,
             "ingest.preauth_max_message_bytes must be 1024..ingest.preauth_max_bytes"),
            (self.ingest.preauth_max_partial_streams >= 1, "ingest.preauth_max_partial_streams must be >= 1"),
            (1 <= self.ingest.max_pending_per_address <= self.ingest.max_pending,
             "ingest.max_pending_per_address must be 1..ingest.max_pending"),
            (self.ingest.output_queue_units >= 16, "ingest.output_queue_units must be >= 16"),
            (self.ingest.output_queue_bytes >= 65536, "ingest.output_queue_bytes must be >= 65536"),
            (self.log.format in ("text", "json"), "log.format must be 'text' or 'json'"),
            (self.server.max_body_bytes >= 1024, "server.max_body_bytes must be >= 1024"),
            (bool(self.tls.cert) == bool(self.tls.key), "tls.cert and tls.key must be set together"),
            (0 <= self.tls.rtmps_port < 65536, "tls.rtmps_port out of range"),
            (self.webhooks.queue_size >= 1, "webhooks.queue_size must be >= 1"),
            (self.webhooks.max_attempts >= 1, "webhooks.max_attempts must be >= 1"),
            (self.webhooks.timeout > 0 and self.webhooks.on_publish_timeout > 0, "webhook timeouts must be > 0"),
            (all(_is_network(p) for p in self.server.trusted_proxies),
             "server.trusted_proxies must be IP addresses or CIDR networks"),
            (all(_is_origin(o) for o in self.server.allowed_origins),
             "server.allowed_origins must be scheme://host[:port] origins"),
            (self.auth.login_requests_per_client >= 1, "auth.login_requests_per_client must be >= 1"),
            (self.auth.register_per_address >= 1, "auth.register_per_address must be >= 1"),
            (self.auth.register_window_seconds > 0, "auth.register_window_seconds must be > 0"),
            (1 <= self.auth.bcrypt_workers <= 64, "auth.bcrypt_workers must be 1..64"),
            (self.auth.bcrypt_queue >= 1, "auth.bcrypt_queue must be >= 1"),
            (self.tls.hsts_max_age >= 0, "tls.hsts_max_age must be >= 0"),
            (self.chat.max_sockets_per_address >= 0, "chat.max_sockets_per_address must be >= 0"),
            (self.chat.frames_per_second > 0 and self.chat.frame_burst >= 1,
             "chat.frames_per_second must be > 0 and chat.frame_burst >= 1"),
            (0 <= self.chat.abuse_block_seconds <= 86400, "chat.abuse_block_seconds must be 0..86400"),
            (self.chat.comment_retention_days >= 0, "chat.comment_retention_days must be >= 0"),
            *_transcode_checks(self.transcode),
            (self.chat.max_comments_per_room >= 0, "chat.max_comments_per_room must be >= 0"),
            (0 < self.chat.prune_interval <= 86400, "chat.prune_interval must be 0..86400 s"),
            (0.5 <= self.server.keepalive_timeout <= 3600, "server.keepalive_timeout must be 0.5..3600 s"),
            (256 <= self.server.max_line_size <= 65536, "server.max_line_size must be 256..65536"),
            (256 <= self.server.max_field_size <= 65536, "server.max_field_size must be 256..65536"),
            (8 <= self.server.max_headers <= 1000, "server.max_headers must be 8..1000"),
            (self.rooms.max_per_user >= 0, "rooms.max_per_user must be >= 0 (0 = no cap)"),
            (self.cluster.redis == "" or urlsplit(self.cluster.redis).scheme in ("redis", "rediss", "unix"),
             "cluster.redis must be empty or a redis://host:port/db URL"),
            (0.5 <= self.cluster.lease_seconds <= 60, "cluster.lease_seconds must be 0.5..60 s"),
            (self.database.url == "" or urlsplit(self.database.url).scheme in ("postgresql", "postgres"),
             "database.url must be empty (SQLite) or a postgresql://user:pass@host:port/db URL"),
            (1 <= self.database.pool_size <= 1000, "database.pool_size must be 1..1000"),
            (0 < self.database.connect_timeout <= 300, "database.connect_timeout must be 0..300 s"),
            (0 < self.database.statement_timeout <= 3600, "database.statement_timeout must be 0..3600 s"),
            (self.recording.storage == "" or self.recording.storage.startswith("s3://"),
             "recording.storage must be empty (disk) or s3://bucket/prefix"),
            (self.recording.min_free_bytes >= 0, "recording.min_free_bytes must be >= 0"),
            (1 <= self.recording.queue_segments <= 1000, "recording.queue_segments must be 1..1000"),
            (1 <= self.recording.upload_attempts <= 20, "recording.upload_attempts must be 1..20"),
            (0 < self.recording.upload_backoff <= 60, "recording.upload_backoff must be 0..60 s"),
            (60 <= self.recording.signed_url_ttl <= 7 * 86400, "recording.signed_url_ttl must be 60..604800 s"),
            (1 <= self.recording.chat_replay_max <= 100_000, "recording.chat_replay_max must be 1..100000"),
            (1 <= self.recording.download_workers <= 16, "recording.download_workers must be 1..16"),
            (10 <= self.recording.dvr_window <= 86400, "recording.dvr_window must be 10..86400 s"),
            (self.recording.max_age_days >= 0, "recording.max_age_days must be >= 0 (0 = keep)"),
            (self.recording.max_bytes >= 0 and self.recording.max_room_bytes >= 0,
             "recording.max_bytes and recording.max_room_bytes must be >= 0 (0 = no cap)"),
            (0.1 <= self.recording.retention_interval <= 86400, "recording.retention_interval must be 0.1..86400 s"),
            (1 <= self.recording.max_clip_seconds <= 3600, "recording.max_clip_seconds must be 1..3600"),
            (self.recording.clips_per_minute >= 1, "recording.clips_per_minute must be >= 1"),
            (2 <= self.recording.stale_after <= 86400, "recording.stale_after must be 2..86400 s"),
            (0 <= self.relay.max_targets_per_room <= 50, "relay.max_targets_per_room must be 0..50"),
            (self.relay.queue_units >= 16, "relay.queue_units must be >= 16"),
            (self.relay.queue_bytes >= 65536, "relay.queue_bytes must be >= 65536"),
            (0 < self.relay.connect_timeout <= 120, "relay.connect_timeout must be 0..120 s"),
            (0 < self.relay.retry_first <= self.relay.retry_max,
             "relay.retry_first must be > 0 and <= relay.retry_max"),
            (self.relay.idle_seconds > 0, "relay.idle_seconds must be > 0"),
            (self.relay.send_buffer_bytes == 0 or self.relay.send_buffer_bytes >= 4096,
             "relay.send_buffer_bytes must be 0 (the OS default) or >= 4096"),
            (0 <= self.relay.push_batch_seconds <= 1, "relay.push_batch_seconds must be 0..1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def _is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def _is_origin(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.path in ("", "/")


def _coerce(value: Any, typ: Any, name: str) -> Any:
    """Turn a TOML or environment value into the field's type."""
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if typ is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if typ is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError(value)
            return str(value)
        if typing.get_origin(typ) is list:  # list[str]: a TOML array or a comma-separated string
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError(value)
            return [i.strip() for i in items if i.strip()]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name}: expected {typ.__name__}, got {value!r}") from err
    raise ConfigError(f"{name}: unsupported type")


def _section_types(obj: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def _apply(settings: Settings, data: Mapping[str, Any], source: str) -> None:
    hints = typing.get_type_hints(Settings)
    for section, values in data.items():
        if section not in hints:
            raise ConfigError(f"{source}: unknown section [{section}]")
        if section == "gifts":
            settings.gifts = _parse_gifts(values, source)
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{section}] must be a table")
        target = getattr(settings, section)
        types_ = _section_types(target)
        for key, value in values.items():
            if section == "transcode" and key == "renditions":
                settings.transcode.renditions = _parse_renditions(value, source)
                continue
            if key not in types_:
                raise ConfigError(f"{source}: unknown setting {section}.{key}")
            setattr(target, key, _coerce(value, types_[key], f"{section}.{key}"))


def _parse_gifts(values: Any, source: str) -> list[Gift]:
    if not isinstance(values, list):
        raise ConfigError(f"{source}: [[gifts]] must be an array of tables")
    gifts = []
    for item in values:
        try:
            gift = Gift(str(item["name"]), str(item["display_name"]), int(item["price"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{source}: each gift needs name, display_name and price") from err
        if gift.price < 1:
            raise ConfigError(f"{source}: gift {gift.name} price must be >= 1")
        gifts.append(gift)
    return gifts


def _parse_renditions(values: Any, source: str) -> list[RenditionSpec]:
    if not isinstance(values, list):
        raise ConfigError(f"{source}: [[transcode.renditions]] must be an array of tables")
    out = []
    for item in values:
        try:
            fps = item.get("fps")
            out.append(RenditionSpec(str(item["name"]), int(item["height"]), int(item["video_bitrate"]),
                                     float(fps) if fps is not None else None,
                                     str(item.get("preset", "veryfast"))))
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{source}: each transcode rendition needs name, height and video_bitrate") from err
    return out


def _transcode_checks(t: TranscodeSettings) -> list[tuple[bool, str]]:
    names = [r.name for r in t.renditions]
    return [
        (all(re.fullmatch(r"[a-z0-9_-]{1,32}", n) and n != "source" for n in names),
         "transcode.renditions names must be [a-z0-9_-]{1,32} and not 'source'"),
        (len(set(names)) == len(names), "transcode.renditions names must be unique"),
        (all(16 <= r.height <= 4320 for r in t.renditions), "transcode.renditions height must be 16..4320"),
        (all(r.video_bitrate >= 10_000 for r in t.renditions), "transcode.renditions video_bitrate must be >= 10000"),
        (all(r.fps is None or 1 <= r.fps <= 240 for r in t.renditions), "transcode.renditions fps must be 1..240"),
        (t.encoder in ("libx264", "h264_nvenc", "h264_vaapi", "h264_qsv"),
         "transcode.encoder must be libx264, h264_nvenc, h264_vaapi or h264_qsv"),
        (0 <= t.encoder_threads <= 64, "transcode.encoder_threads must be 0..64"),
        (t.max_lag > 0, "transcode.max_lag must be > 0"),
        (t.restart_limit >= 0, "transcode.restart_limit must be >= 0"),
        (t.thumbnail_interval == 0 or t.thumbnail_interval >= 1, "transcode.thumbnail_interval must be 0 or >= 1"),
    ]


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Collect LIVECAST_SECTION_KEY variables into {section: {key: value}}."""
    out: dict[str, dict[str, str]] = {}
    hints = typing.get_type_hints(Settings)
    defaults = Settings()
    for section in hints:
        if section == "gifts":
            continue
        for f in dataclasses.fields(getattr(defaults, section)):
            var = f"LIVECAST_{section}_{f.name}".upper()
            if var in environ:
                out.setdefault(section, {})[f.name] = environ[var]
    return out


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Defaults, then the TOML file, then LIVECAST_* variables, then explicit overrides (flags)."""
    settings = Settings()
    environ = os.environ if environ is None else environ
    path = config_file or environ.get("LIVECAST_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as err:
            raise ConfigError(f"config file not found: {path}") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: {err}") from err
        _apply(settings, data, str(path))
    _apply(settings, env_overrides(environ), "environment")
    if overrides:
        _apply(settings, {k: {kk: vv for kk, vv in v.items() if vv is not None} for k, v in overrides.items()}, "flags")
    settings.validate()
    return settings


__all__ = ["ConfigError", "Gift", "Settings", "load_settings"]
