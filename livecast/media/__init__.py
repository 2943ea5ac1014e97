"""Media formats shared by ingest, templates and relays (the FLV tag codec)."""
