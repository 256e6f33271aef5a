"""HTTP API (layer 4): one module per resource, mirroring the /v1 paths."""
