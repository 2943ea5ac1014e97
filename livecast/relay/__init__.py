"""Relay: push a room to other RTMP(S) servers; pull a room from a remote source."""
