"""LiveCast: self-hosted live streaming (RTMP in, HLS out, chat) in one asyncio process."""

__version__ = "0.1.0"
