"""Recordings: every broadcast of a room with recording on, stored as its HLS segments
(no re-encoding) in object storage (disk or S3), indexed in the database, replayed as VOD."""
