"""Skills: upload rules, SKILL.md frontmatter and the wire objects (layer 0).

An upload is a list of files whose names carry their paths (``my-skill/SKILL.md``). This
module decides, without touching disk or database, whether such a list is a skill: one
top-level directory holding ``SKILL.md``, safe relative paths, a frontmatter ``name`` that is
a kebab-case slug and a ``description``. Where the bytes go is the store's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agenthost.errors import InvalidRequest
from agenthost.schemas.common import JSON, ts

MAX_SKILL_FILES = 500
"""Files in one upload (each ``files[]`` part is one file)."""
MAX_PATH_CHARS = 1024
MAX_SEGMENT_CHARS = 255
MAX_NAME_CHARS = 64
MAX_DESCRIPTION_CHARS = 1024
MAX_DISPLAY_NAME_CHARS = 255
RESERVED_WORDS = ("anthropic", "claude")
SKILL_FILE = "SKILL.md"
LATEST = "latest"
"""The version alias: a skill's newest version."""

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_XML_TAG = re.compile(r"<[^<>]*>")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class UploadPlan:
    """Where each uploaded file goes: ``paths[i]`` is part ``i``'s path below the skill's directory."""

    top: str | None  # the shared top-level directory; None when every file was sent without one
    paths: list[str]
    skill_md: int  # index of the part that is SKILL.md


@dataclass(frozen=True)
class Frontmatter:
    """What a skill version takes from SKILL.md."""

    name: str
    description: str


def _split(index: int, raw: str) -> list[str]:
    where = f"files[{index}]"
    name = raw.replace("\\", "/")
    if not name:
        raise InvalidRequest(f"{where}: the part's filename must carry the file's path, e.g. my-skill/{SKILL_FILE}")
    if len(name) > MAX_PATH_CHARS:
        raise InvalidRequest(f"{where}: the path is longer than {MAX_PATH_CHARS} characters")
    if _CONTROL.search(name):
        raise InvalidRequest(f"{where}: the path {name[:80]!r} contains control characters")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise InvalidRequest(f"{where}: the path {name!r} is absolute; give it relative to the skill's parent")
    segments = name.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidRequest(f"{where}: the path {name!r} has an empty, '.' or '..' segment")
        if len(segment) > MAX_SEGMENT_CHARS:
            raise InvalidRequest(f"{where}: a name in {name[:80]!r} is longer than {MAX_SEGMENT_CHARS} characters")
    return segments


def plan_upload(filenames: list[str]) -> UploadPlan:
    """Check an upload's paths: 1-500 files under one top-level directory that holds SKILL.md.

    Files sent without any directory (``SKILL.md``, ``notes.md``, as the SDK names a bare
    ``pathlib.Path``) are taken as the skill's directory itself.
    """
    if not filenames:
        raise InvalidRequest("files: at least one file is required, including a SKILL.md")
    if len(filenames) > MAX_SKILL_FILES:
        raise InvalidRequest(f"files: at most {MAX_SKILL_FILES} files are allowed, got {len(filenames)}")
    split = [_split(index, name) for index, name in enumerate(filenames)]
    flat = all(len(segments) == 1 for segments in split)
    top: str | None = None
    if not flat:
        top = split[0][0] if len(split[0]) > 1 else None
        for index, segments in enumerate(split):
            if len(segments) == 1 or segments[0] != top:
                raise InvalidRequest(
                    f"files[{index}]: every file must be inside one top-level directory"
                    + (f" ({top}/...)" if top else "")
                    + f", got {'/'.join(segments)!r}"
                )
    paths = ["/".join(segments if flat else segments[1:]) for segments in split]
    seen: dict[str, int] = {}
    for index, path in enumerate(paths):
        if path in seen:
            raise InvalidRequest(f"files[{index}]: {path!r} is given twice (also files[{seen[path]}])")
        seen[path] = index
    for index, path in enumerate(paths):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in seen:
                raise InvalidRequest(f"files[{index}]: {path!r} is inside {parent!r}, which is a file")
    if SKILL_FILE not in seen:
        where = f"{top}/{SKILL_FILE}" if top else SKILL_FILE
        raise InvalidRequest(f"files: {where} is required at the root of the skill's directory")
    return UploadPlan(top=top, paths=paths, skill_md=seen[SKILL_FILE])


# -- SKILL.md -----------------------------------------------------------------------------------


def _unquote(value: str, key: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        escapes = {'\\"': '"', "\\\\": "\\", "\\n": "\n", "\\t": "\t", "\\/": "/"}
        return re.sub(r"\\.", lambda m: escapes.get(m.group(0), m.group(0)), inner)
    if value[:1] in ("'", '"'):
        raise InvalidRequest(f"{SKILL_FILE}: the frontmatter value of {key!r} has an unclosed quote")
    return re.sub(r"\s+#.*$", "", value)  # a plain scalar's trailing comment


def _block(lines: list[str], style: str) -> str:
    """A YAML block scalar (``|`` keeps line breaks, ``>`` folds them), indentation removed."""
    indents = [len(line) - len(line.lstrip(" ")) for line in lines if line.strip()]
    cut = min(indents, default=0)
    body = [line[cut:] if line.strip() else "" for line in lines]
    if style.startswith("|"):
        return "\n".join(body).strip("\n")
    folded: list[str] = []
    for line in body:
        if not line:
            folded.append("\n")
        else:
            folded.append(line if not folded or folded[-1] == "\n" else " " + line)
    return "".join(folded).strip()


def parse_frontmatter(text: str) -> dict[str, str]:
    """The top-level ``key: value`` pairs of a YAML frontmatter block between ``---`` lines.

    Plain, quoted, multi-line plain and block (``|``, ``>``) scalars are read; nested maps and
    lists (``metadata:``, ``allowed-tools:``) are skipped, since only ``name`` and
    ``description`` matter here. No YAML library is needed for that much.
    """
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not lines or lines[0].strip() != "---":
        raise InvalidRequest(f"{SKILL_FILE}: must start with a YAML frontmatter block ('---' line)")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() in ("---", "..."))
    except StopIteration:
        raise InvalidRequest(f"{SKILL_FILE}: the frontmatter block has no closing '---' line") from None
    block = lines[1:end]
    values: dict[str, str] = {}
    index = 0
    while index < len(block):
        line = block[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#") or line[0] in (" ", "\t"):
            continue
        match = re.match(r"^([A-Za-z0-9_-]+)\s*:(?:\s+(.*))?$", line.rstrip())
        if match is None:
            continue  # list items and other YAML this parser does not need
        key, value = match.group(1), (match.group(2) or "").strip()
        more: list[str] = []
        while index < len(block) and (not block[index].strip() or block[index][0] in (" ", "\t")):
            more.append(block[index])
            index += 1
        if re.fullmatch(r"[|>][+-]?[0-9]?", value):
            values[key] = _block(more, value)
        elif value:
            # A plain or quoted scalar may go on over indented lines; YAML folds them with spaces.
            value = " ".join([value, *(line.strip() for line in more if line.strip())])
            values[key] = _unquote(value, key)
        # an empty value opens a nested map or list: not a string, skipped
    return values


def check_name(name: str, where: str) -> str:
    """A skill's name: a kebab-case slug of at most 64 characters without reserved words."""
    if not name or len(name) > MAX_NAME_CHARS or not _SLUG.match(name):
        raise InvalidRequest(
            f"{where}: {name[:80]!r} is not a skill name: use 1-{MAX_NAME_CHARS} lowercase letters, digits "
            "and single hyphens (kebab-case), e.g. my-skill"
        )
    for word in RESERVED_WORDS:
        if word in name:
            raise InvalidRequest(f"{where}: {name!r} contains the reserved word {word!r}")
    return name


def read_skill_md(data: bytes, top: str | None) -> Frontmatter:
    """The name and description a SKILL.md declares; the name falls back to the top-level directory."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"{SKILL_FILE}: must be UTF-8 text") from None
    values = parse_frontmatter(text)
    raw_name = values.get("name", "").strip()
    if raw_name:
        name = check_name(raw_name, f"{SKILL_FILE}: frontmatter name")
    elif top is not None:
        name = check_name(top, "files: the top-level directory (SKILL.md has no frontmatter name)")
    else:
        raise InvalidRequest(f"{SKILL_FILE}: the frontmatter needs a name (or send the files inside a directory)")
    description = values.get("description", "").strip()
    if not description:
        raise InvalidRequest(f"{SKILL_FILE}: the frontmatter needs a non-empty description")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidRequest(f"{SKILL_FILE}: the description is longer than {MAX_DESCRIPTION_CHARS} characters")
    if _XML_TAG.search(description):
        raise InvalidRequest(f"{SKILL_FILE}: the description must not contain XML tags")
    return Frontmatter(name=name, description=description)


def check_display_name(value: str) -> str:
    """An explicit ``display_name``: one line of 1-255 characters."""
    if len(value) > MAX_DISPLAY_NAME_CHARS:
        raise InvalidRequest(f"display_name: at most {MAX_DISPLAY_NAME_CHARS} characters are allowed")
    if _CONTROL.search(value):
        raise InvalidRequest("display_name: must be a single line without control characters")
    if not value.strip():
        raise InvalidRequest("display_name: must not be blank")
    return value


# -- wire objects -------------------------------------------------------------------------------


def skill_json(row: Any) -> JSON:
    """The wire Skill; custom is the only source stored here."""
    return {
        "id": row.id,
        "type": "skill",
        "display_name": row.display_name,
        "latest_version_id": row.latest_version_id,
        "source": {"type": "custom"},
        "created_at": ts(row.created_at),
        "updated_at": ts(row.updated_at),
    }


def version_json(row: Any) -> JSON:
    """The wire SkillVersion."""
    return {
        "id": row.id,
        "type": "skill_version",
        "skill_id": row.skill_id,
        "name": row.name,
        "description": row.description,
        "created_at": ts(row.created_at),
    }
