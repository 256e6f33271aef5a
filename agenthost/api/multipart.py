"""Multipart bodies (layer 4): Starlette's parser, where a named part is a file even without a filename.

The SDK documents that an absent or empty ``filename`` on the ``file`` part of an upload is
replaced with ``unnamed`` plus an extension; Starlette would parse such a part as a text field
(decoded, and capped at 1 MiB). This parser keeps it a file.
"""

from __future__ import annotations

from tempfile import SpooledTemporaryFile

from starlette.datastructures import FormData, Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from agenthost.errors import InvalidRequest
from agenthost.schemas.common import unstorable


class _FileParts(MultiPartParser):
    def __init__(self, *args: object, file_fields: frozenset[str], **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.file_fields = file_fields

    def on_headers_finished(self) -> None:
        super().on_headers_finished()
        part = self._current_part
        if part.file is None and part.field_name in self.file_fields:
            self._current_fields -= 1
            self._current_files += 1
            if self._current_files > self.max_files:
                raise MultiPartException(f"Too many files. Maximum number of files is {self.max_files}.")
            spool = SpooledTemporaryFile(max_size=self.spool_max_size)
            self._files_to_close_on_error.append(spool)
            part.file = UploadFile(file=spool, size=0, filename="", headers=Headers(raw=part.item_headers))  # type: ignore[arg-type]


async def read_form(request: Request, *, file_fields: frozenset[str], max_files: int, max_fields: int) -> FormData:
    """Parse a multipart body; a part named in ``file_fields`` is a file whether or not it has a filename."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest(f"body: must be multipart/form-data with a `{sorted(file_fields)[0]}` part")
    parser = _FileParts(
        request.headers, request.stream(), file_fields=file_fields, max_files=max_files, max_fields=max_fields
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise InvalidRequest(f"{sorted(file_fields)[0]}: at most {max_files} file parts are allowed") from None
        raise HTTPException(400, f"body: {exc.message}") from None
    try:
        _check_storable(form)
    except InvalidRequest:
        await form.close()
        raise
    return form


def _check_storable(form: FormData) -> None:
    """Refuse a part whose name, filename, content type or text value the stores cannot hold."""
    for name, value in form.multi_items():
        texts = {"part name": name}
        if isinstance(value, UploadFile):
            texts |= {"filename": value.filename or "", "Content-Type": value.content_type or ""}
        else:
            texts["value"] = value
        for what, text in texts.items():
            reason = unstorable(text)
            if reason is not None:
                shown = name.encode("utf-8", "backslashreplace").decode()[:80]
                raise InvalidRequest(f"{shown}: the {what} {reason}")
