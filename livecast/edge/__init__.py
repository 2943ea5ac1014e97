"""The edge role: origin client, HLS cache, API proxy, chat and heartbeat."""
