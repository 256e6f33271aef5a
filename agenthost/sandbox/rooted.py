"""File access confined to a sandbox's directories (issue #4 point 4).

The file tools run in the server, on the host directories that a sandbox sees as
``/workspace``, ``/mnt/session/outputs`` and ``/mnt/session/uploads``. The agent owns
those directories and can plant symlinks in them (``ln -s /etc/shadow x``) or race a
rename against a tool call, so no path is ever resolved on the host as a string:

* every open goes through ``openat2(2)`` with ``RESOLVE_IN_ROOT``, relative to a file
  descriptor of the mount's directory: ``..``, absolute symlinks and magic links all
  resolve *inside* that directory, exactly as they would if the directory were ``/``;
* walks (glob, grep) use directory descriptors and never follow symlinks;
* only regular files are read or written, opened non-blocking (a FIFO cannot hang a
  tool), and files and directories the server creates are given to the sandbox's uid.

On kernels without ``openat2`` (before 5.6) the fallback walks one component at a time
with ``O_NOFOLLOW`` and refuses symlinks altogether.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

WORKSPACE = "/workspace"
MAX_DEPTH = 64  # directory levels glob and grep descend
_SYS_OPENAT2 = 437  # the same number on every architecture
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_libc = ctypes.CDLL(None, use_errno=True)


def _probe_openat2() -> bool:
    """Whether openat2 works here: kernels before 5.6 answer ENOSYS, some seccomp profiles EPERM."""
    how = _OpenHow(os.O_PATH | os.O_CLOEXEC, 0, 0)
    fd = _libc.syscall(_SYS_OPENAT2, -100, b"/", ctypes.byref(how), ctypes.sizeof(how))  # -100: AT_FDCWD
    if fd >= 0:
        os.close(fd)
        return True
    return False


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_OPENAT2 = _probe_openat2()


class FileAccessError(Exception):
    """The path cannot be used; the message is meant for the model."""


def _openat2(root_fd: int, relative: str, flags: int, mode: int = 0o600) -> int:
    """Open ``relative`` beneath ``root_fd`` as if that directory were ``/``."""
    if not _OPENAT2:
        return _open_nofollow(root_fd, relative, flags, mode)
    resolve = _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    fd = _libc.syscall(_SYS_OPENAT2, root_fd, (relative or ".").encode(), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), relative)
    return fd


def _open_nofollow(root_fd: int, relative: str, flags: int, mode: int) -> int:
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EACCES, "'..' is not supported on this kernel", relative)
    current = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            following = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
            os.close(current)
            current = following
        if not parts:
            return os.open(".", flags | os.O_CLOEXEC, dir_fd=current)
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=current)
    finally:
        os.close(current)


@dataclass(frozen=True)
class Mount:
    """A host directory the sandbox sees at ``path``."""

    path: str
    host: Path
    writable: bool = True


@dataclass(frozen=True)
class Located:
    mount: Mount
    relative: str  # "" for the mount's own directory

    @property
    def display(self) -> str:
        return f"{self.mount.path}/{self.relative}" if self.relative else self.mount.path


class RootedFiles:
    """The file operations of the file tools, confined to a sandbox's mounts."""

    def __init__(self, mounts: list[Mount], owner: tuple[int, int] | None = None):
        self.mounts = sorted(mounts, key=lambda mount: len(mount.path), reverse=True)
        self.owner = owner

    # -- paths -----------------------------------------------------------------------------------

    def locate(self, path: str) -> Located:
        """Which mount a sandbox path is under; relative paths are relative to /workspace."""
        if not path.startswith("/"):
            path = f"{WORKSPACE}/{path}"
        normal = os.path.normpath(path)
        for mount in self.mounts:
            if normal == mount.path or normal.startswith(mount.path + "/"):
                return Located(mount, normal[len(mount.path) :].lstrip("/"))
        reachable = ", ".join(sorted(mount.path for mount in self.mounts))
        raise FileAccessError(f"{path}: the file tools reach only {reachable}; use bash for other paths")

    def server_view(self) -> RootedFiles:
        """The same mounts, all writable: for the server's own writes into mounts that are read-only to the agent."""
        return RootedFiles([replace(mount, writable=True) for mount in self.mounts], self.owner)

    def remove(self, path: str) -> None:
        """Delete a file (a symlink itself, never its target), then the directories it leaves empty."""
        where = self.locate(path)
        if not where.mount.writable:
            raise FileAccessError(f"{path}: {where.mount.path} is read-only")
        parts = where.relative.split("/")
        remove: Callable[..., None] = os.unlink  # the file first, then each parent while it is empty
        while parts:
            name = parts.pop()
            try:
                parent = self._open(Located(where.mount, "/".join(parts)), os.O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                return
            try:
                remove(name, dir_fd=parent)
            except FileNotFoundError:
                pass
            except OSError:  # a directory that still holds something: stop there
                return
            finally:
                os.close(parent)
            remove = os.rmdir

    def host_dir(self, path: str) -> Path | None:
        """The host directory mounted at exactly ``path``, or None when nothing is mounted there."""
        return next((mount.host for mount in self.mounts if mount.path == path), None)

    def _open(self, where: Located, flags: int, mode: int = 0o644) -> int:
        root = os.open(where.mount.host, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return _openat2(root, where.relative, flags, mode)
        finally:
            os.close(root)

    # -- reading ---------------------------------------------------------------------------------

    def read_bytes(self, path: str, limit: int) -> bytes:
        """A regular file's content; FileAccessError when it is missing, special or over ``limit``."""
        where = self.locate(path)
        try:
            fd = self._open(where, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise FileAccessError(f"{path}: no such file") from None
        except OSError as exc:
            raise FileAccessError(f"{path}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise FileAccessError(f"{path}: not a regular file")
            if info.st_size > limit:
                raise FileAccessError(f"{path}: file is {info.st_size} bytes, over the limit of {limit}")
            with os.fdopen(os.dup(fd), "rb") as handle:
                return handle.read(limit + 1)[:limit]
        finally:
            os.close(fd)

    def size(self, path: str) -> int:
        where = self.locate(path)
        try:
            fd = self._open(where, os.O_PATH)
        except FileNotFoundError:
            raise FileAccessError(f"{path}: no such file") from None
        except OSError as exc:
            raise FileAccessError(f"{path}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileAccessError(f"{path}: not a regular file")
        return info.st_size

    # -- writing ---------------------------------------------------------------------------------

    def write_bytes(self, path: str, data: bytes) -> str:
        """Create or replace a regular file (and its parent directories); return its sandbox path."""
        where = self.locate(path)
        if not where.mount.writable:
            raise FileAccessError(f"{path}: {where.mount.path} is read-only")
        if not where.relative:
            raise FileAccessError(f"{path}: is a directory")
        parent, _, _ = where.relative.rpartition("/")
        try:
            self._make_dirs(where.mount, parent)
            fd = self._open(where, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK)
        except FileAccessError:
            raise
        except OSError as exc:
            raise FileAccessError(f"{path}: {exc.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FileAccessError(f"{path}: not a regular file")
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.owner is not None:
                os.fchown(fd, *self.owner)
        finally:
            os.close(fd)
        return where.display

    def move_in(self, source: Path, path: str) -> str:
        """Move a directory the server made (``source``, on the same file system) to ``path``; return its path.

        Parents are created as :meth:`write_bytes` creates them, and the agent's symlinks resolve inside
        the mount. Only an empty directory may be in the way (it is replaced); anything else is an
        OSError, as is a read-only mount.
        """
        where = self.locate(path)
        if not where.mount.writable or not where.relative:
            raise PermissionError(errno.EACCES, f"{where.mount.path} is read-only or a mount itself", path)
        parent, _, name = where.relative.rpartition("/")
        self._make_dirs(where.mount, parent)
        directory = self._open(Located(where.mount, parent), os.O_PATH | os.O_DIRECTORY)
        try:
            os.rename(source, name, dst_dir_fd=directory)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise FileExistsError(exc.errno, "something other than an empty directory is there", path) from None
            raise
        finally:
            os.close(directory)
        return where.display

    def _make_dirs(self, mount: Mount, relative: str) -> None:
        parts = [part for part in relative.split("/") if part]
        for depth in range(len(parts)):
            prefix = "/".join(parts[: depth + 1])
            try:
                os.close(self._open(Located(mount, prefix), os.O_PATH | os.O_DIRECTORY))
                continue
            except FileNotFoundError:
                pass
            parent = self._open(Located(mount, "/".join(parts[:depth])), os.O_PATH | os.O_DIRECTORY)
            try:
                os.mkdir(parts[depth], 0o755, dir_fd=parent)
                if self.owner is not None:
                    os.chown(parts[depth], *self.owner, dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                pass  # made meanwhile, or a symlink: the next open resolves it inside the root
            finally:
                os.close(parent)

    # -- walking ---------------------------------------------------------------------------------

    def walk(self, path: str) -> Iterator[tuple[str, os.stat_result, int, str]]:
        """Every regular file under a directory (or the file itself): display path, stat, dir fd, name.

        Symlinks are not followed; the dir fd is valid until the next item.
        """
        where = self.locate(path)
        try:
            fd = self._open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK)
        except NotADirectoryError:
            parent, _, name = where.relative.rpartition("/")
            directory = self._open(Located(where.mount, parent), os.O_PATH | os.O_DIRECTORY)
            try:
                info = os.stat(name, dir_fd=directory, follow_symlinks=False)
                if stat.S_ISREG(info.st_mode):
                    yield where.display, info, directory, name
            finally:
                os.close(directory)
            return
        except FileNotFoundError:
            raise FileAccessError(f"{path}: no such file or directory") from None
        except OSError as exc:
            raise FileAccessError(f"{path}: {exc.strerror}") from None
        try:
            yield from _walk(fd, where.display)
        finally:
            os.close(fd)

    @staticmethod
    def read_at(dir_fd: int, name: str, limit: int) -> bytes | None:
        """A walked file's content (None when it is no longer a regular file or is over ``limit``)."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
                return None
            with os.fdopen(os.dup(fd), "rb") as handle:
                return handle.read(limit)
        finally:
            os.close(fd)


def _walk(top: int, display: str) -> Iterator[tuple[str, os.stat_result, int, str]]:
    """Regular files below the directory ``top``, depth first, without recursion or following symlinks.

    At most MAX_DEPTH + 1 directories are open at once (an agent can make thousands of siblings),
    and directories deeper than MAX_DEPTH are not entered (or thousands of levels).
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    stack: list[tuple[int, str, Iterator[os.DirEntry[str]]]] = []

    def enter(dir_fd: int, shown: str) -> None:
        try:
            with os.scandir(dir_fd) as entries:
                listed = sorted(entries, key=lambda entry: entry.name)
        except OSError:
            listed = []
        stack.append((dir_fd, shown, iter(listed)))

    enter(os.dup(top), display)
    try:
        while stack:
            dir_fd, shown, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                os.close(dir_fd)
                stack.pop()
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                yield f"{shown}/{entry.name}", info, dir_fd, entry.name
            elif stat.S_ISDIR(info.st_mode) and len(stack) <= MAX_DEPTH:
                try:
                    child = os.open(entry.name, flags, dir_fd=dir_fd)
                except OSError:
                    continue
                enter(child, f"{shown}/{entry.name}")
    finally:
        for dir_fd, _, _ in stack:
            os.close(dir_fd)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a glob over relative paths: ``**/`` any directories, ``*`` and ``?`` within one name."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", index + 2 if pattern[index + 1 : index + 2] in ("!", "]") else index + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[index + 1 : end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append(f"[{body.replace(chr(92), chr(92) * 2)}]")
                index = end
        else:
            out.append(re.escape(char))
        index += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error as exc:
        raise FileAccessError(f"`pattern` is not a valid glob: {exc}") from None
