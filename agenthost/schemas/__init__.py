"""Wire types (layer 0): request bodies as pydantic models, responses as plain dicts.

Request models refuse unknown keys, so a misspelt or unsupported field is a 400
that names it. Responses are built as dicts that match the official SDK's types
field for field; ``tests/`` checks them through the SDK in strict mode.
"""
