"""Adaptive bitrate: a transcoding ladder made in worker processes, written into HLS as renditions."""
