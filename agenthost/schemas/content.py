"""Content blocks that clients send inside events (layer 0)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from agenthost.schemas.common import Body


class Base64ImageSource(Body):
    type: Literal["base64"]
    data: Annotated[str, StringConstraints(min_length=1)]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]


class UrlSource(Body):
    type: Literal["url"]
    url: Annotated[str, StringConstraints(min_length=1, pattern=r"^https?://")]


class FileSource(Body):
    type: Literal["file"]
    file_id: Annotated[str, StringConstraints(min_length=1)]


class Base64DocumentSource(Body):
    type: Literal["base64"]
    data: Annotated[str, StringConstraints(min_length=1)]
    media_type: Literal["application/pdf"]


class PlainTextSource(Body):
    type: Literal["text"]
    data: str
    media_type: Literal["text/plain"]


class TextBlock(Body):
    type: Literal["text"]
    text: str


class ImageBlock(Body):
    type: Literal["image"]
    source: Annotated[Base64ImageSource | UrlSource | FileSource, Field(discriminator="type")]


class DocumentBlock(Body):
    type: Literal["document"]
    source: Annotated[Base64DocumentSource | PlainTextSource | UrlSource | FileSource, Field(discriminator="type")]
    context: str | None = None
    title: str | None = None


class RedactedBlock(Body):
    type: Literal["redacted"]


UserContent = Annotated[TextBlock | ImageBlock | DocumentBlock | RedactedBlock, Field(discriminator="type")]
