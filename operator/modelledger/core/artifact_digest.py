"""The digest of a directory of files (a model directory, a DVC-tracked data directory): one sha256 that
anyone can recompute with coreutils (docs/lineage.md#the-directory-digest).

The algorithm, `modelledger-tree/v1`:

1. Take every regular file under the directory; its path relative to the directory, with `/` between
   parts, is its name. Directories themselves, empty or not, add nothing.
2. Sort the files by the UTF-8 bytes of their names (as `LC_ALL=C sort`).
3. For each file write one line: the lower-case hex sha256 of its content, two spaces, its name, and a
   line feed (exactly a line of `sha256sum`'s output).
4. The digest is `sha256:` and the sha256 of those lines, concatenated.

So `cd DIR && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum | sed 's|  \\./|  |' |
sha256sum` prints the same hex (the names keep find's `./` until sed takes it off, so a file named `-`
is not read as standard input). Names holding a line feed or a backslash are refused: `sha256sum`
escapes those, and the recipe would then disagree.

Pure: it takes (name, file sha256) pairs; reading the files is the caller's (adapters.file_digests).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

ALGORITHM = "modelledger-tree/v1"
HEX64 = re.compile(r"^[0-9a-f]{64}$")


class UnsupportedName(ValueError):
    """A file name the recipe cannot reproduce (line feed, backslash) or that is not relative."""


def check_name(name: str) -> str:
    """A relative POSIX path without `.`/`..` parts, empty parts, line feeds or backslashes."""
    if "\n" in name or "\\" in name:
        raise UnsupportedName(f"file name {name!r}: line feeds and backslashes are not supported")
    parts = name.split("/")
    if not name or name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise UnsupportedName(f"file name {name!r}: not a relative path of named parts")
    return name


def manifest(files: Iterable[tuple[str, str]]) -> bytes:
    """The `sha256sum`-style lines the digest is taken over: `<hex>  <name>\\n`, sorted by name bytes."""
    entries: dict[bytes, str] = {}
    for name, sha256_hex in files:
        encoded = check_name(name).encode("utf-8")
        if not HEX64.fullmatch(sha256_hex):
            raise ValueError(f"file {name!r}: {sha256_hex!r} is not a lower-case hex sha256")
        if encoded in entries:
            raise ValueError(f"file {name!r} given twice")
        entries[encoded] = sha256_hex
    return b"".join(entries[name].encode("ascii") + b"  " + name + b"\n" for name in sorted(entries))


def tree_digest(files: Iterable[tuple[str, str]]) -> str:
    """`sha256:<hex>` of the manifest of (name, content sha256) pairs; order of the input is irrelevant."""
    return "sha256:" + hashlib.sha256(manifest(files)).hexdigest()
