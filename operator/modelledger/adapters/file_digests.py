"""Reading files to digest them: a file's sha256 (and md5, which DVC names content by), and a directory's
digest by the documented algorithm (core.artifact_digest)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from modelledger.core import artifact_digest

CHUNK = 1 << 20


@dataclass(frozen=True)
class FileHashes:
    sha256: str
    md5: str
    """DVC 3's md5 of the bytes as they are."""
    md5_text: str
    """DVC 2's md5 of a text file: CR LF read as LF (DVC 2 hashed text files so)."""


def file_hashes(path: Path) -> FileHashes:
    sha256, md5, md5_text = hashlib.sha256(), hashlib.md5(), hashlib.md5()
    pending_cr = False
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
            # CR LF across a chunk boundary: hold a trailing CR back until the next chunk is seen.
            text = (b"\r" if pending_cr else b"") + chunk
            pending_cr = text.endswith(b"\r")
            md5_text.update((text[:-1] if pending_cr else text).replace(b"\r\n", b"\n"))
    if pending_cr:
        md5_text.update(b"\r")
    return FileHashes(sha256.hexdigest(), md5.hexdigest(), md5_text.hexdigest())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def directory_files(root: Path, *, leave_out: Collection[str] = ()) -> list[tuple[str, Path]]:
    """Every regular file under `root` as (name relative to root with `/`, path), `leave_out` names
    excepted. A symbolic link is refused: `find -type f` in the recipe would skip it, silently."""
    found: list[tuple[str, Path]] = []
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise artifact_digest.UnsupportedName(f"{name}: a symbolic link (copy the file instead)")
        if path.is_file() and name not in leave_out:
            found.append((name, path))
    return found


def directory_digest(root: Path, *, leave_out: Collection[str] = ()) -> str:
    """`sha256:<hex>` of the directory by `modelledger-tree/v1` (core.artifact_digest)."""
    return artifact_digest.tree_digest(
        (name, file_sha256(path)) for name, path in directory_files(root, leave_out=leave_out)
    )


def path_digest(path: Path, *, leave_out: Collection[str] = ()) -> str:
    """A directory's tree digest, or a single file's plain sha256 (what `sha256sum FILE` prints)."""
    if path.is_dir():
        return directory_digest(path, leave_out=leave_out)
    return "sha256:" + file_sha256(path)
