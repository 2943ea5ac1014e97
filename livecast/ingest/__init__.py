"""The origin's media wiring: RTMP listener -> publish sessions -> HLS output."""
