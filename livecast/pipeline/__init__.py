"""The media pipeline: the stream hub, publish sessions for any source, and queued outputs."""
