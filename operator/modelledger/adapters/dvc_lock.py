"""Reading a `dvc.lock`: each stage dependency's path and digest, as ModelVersion data references.

No `dvc` package: dvc.lock is plain YAML (DVC writes it with a YAML library, schema `2.0`, or the
stage-keyed layout of DVC 1), and DVC's cache is content-addressed files, so reading both needs PyYAML
alone, which the core install has. (DVC itself would add ~100 packages for two file reads.)

Where a dependency's content is in the local DVC cache, its sha256 is computed from there, after
checking the cached bytes against DVC's md5 (a corrupt cache must not lend its digest to the lock);
a directory (`….dir`) gets the tree digest of core.artifact_digest over its listed files. Otherwise
the reference keeps DVC's own `md5:` digest, which the API accepts for data only.
"""

from __future__ import annotations

import configparser
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelledger.adapters import file_digests
from modelledger.core import artifact_digest
from modelledger.core.registration import DataReference

MD5 = re.compile(r"^[0-9a-f]{32}(\.dir)?$")


class LockError(ValueError):
    """dvc.lock cannot be read or is not DVC's (exit 2), or the cache contradicts it."""


@dataclass(frozen=True)
class Dependency:
    path: str
    md5: str
    """DVC's md5; a directory's ends in `.dir`."""
    legacy: bool
    """Hashed by DVC 2 (no `hash: md5` field): cached at `cache/xx/…`, text files with LF line ends."""


@dataclass
class LockData:
    references: list[DataReference]
    warnings: list[str]


def read(lock: Path, *, cache: Path | None = None, stages: list[str] | None = None) -> LockData:
    """Every dependency of every stage (or of `stages`), once per path, in the order the lock lists."""
    dependencies, warnings = parse(lock, stages)
    where = cache or cache_dir(lock)
    references: list[DataReference] = []
    for dependency in dependencies:
        digest = sha256_from_cache(dependency, where) if where is not None else None
        if digest is None:
            digest = f"md5:{dependency.md5}"
            warnings.append(f"data {dependency.path!r}: not in the DVC cache, DVC's md5 kept")
        references.append(DataReference(dependency.path, digest))
    return LockData(references, warnings)


def parse(lock: Path, stages: list[str] | None = None) -> tuple[list[Dependency], list[str]]:
    try:
        document = yaml.safe_load(lock.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise LockError(f"{lock}: cannot read it as dvc.lock: {error}") from error
    if not isinstance(document, dict):
        raise LockError(f"{lock}: not a dvc.lock (a mapping of stages)")
    every = document.get("stages") if "schema" in document else document  # DVC 1 had no `schema`
    if not isinstance(every, dict):
        raise LockError(f"{lock}: no stages")
    unknown = sorted(set(stages or []) - set(every))
    if unknown:
        raise LockError(f"{lock}: no stage {', '.join(unknown)} (it has {', '.join(sorted(every))})")
    warnings: list[str] = []
    found: dict[str, Dependency] = {}
    for stage, body in every.items():
        if stages and stage not in stages:
            continue
        deps = body.get("deps") if isinstance(body, dict) else None
        for entry in deps if isinstance(deps, list) else []:
            dependency = _dependency(entry)
            if dependency is None:
                what = entry.get("path", entry) if isinstance(entry, dict) else entry
                warnings.append(
                    f"stage {stage}: dependency {what!r} left out: it has no md5 (not DVC-hashed)"
                )
                continue
            earlier = found.setdefault(dependency.path, dependency)
            if earlier.md5 != dependency.md5:
                warnings.append(f"data {dependency.path!r}: two md5s in the lock, the first kept")
    return list(found.values()), warnings


def _dependency(entry: Any) -> Dependency | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return None
    md5 = str(entry.get("md5") or "")
    if not MD5.fullmatch(md5):
        return None  # an `etag` or `checksum` of a remote dependency: nothing to hash locally
    return Dependency(path=entry["path"], md5=md5, legacy=entry.get("hash") != "md5")


def cache_dir(lock: Path) -> Path | None:
    """The repository's DVC cache: `cache.dir` of .dvc/config.local or .dvc/config, else .dvc/cache;
    the repository is the nearest directory above dvc.lock holding `.dvc`."""
    for directory in [lock.resolve().parent, *lock.resolve().parents]:
        dvc = directory / ".dvc"
        if dvc.is_dir():
            for name in ("config.local", "config"):
                configured = _configured_cache(dvc / name)
                if configured is not None:
                    return configured if configured.is_absolute() else (dvc / configured).resolve()
            return dvc / "cache"
    return None


def _configured_cache(config: Path) -> Path | None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read(config, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None
    value = parser.get("cache", "dir", fallback="").strip().strip("'\"")
    return Path(value) if value else None


def cached_object(cache: Path, md5: str, legacy: bool) -> Path | None:
    """DVC 3 keeps objects at `files/md5/ab/cdef…`, DVC 2 at `ab/cdef…`: where this one is, if anywhere."""
    layouts = [cache / md5[:2] / md5[2:], cache / "files" / "md5" / md5[:2] / md5[2:]]
    for path in layouts if legacy else reversed(layouts):
        if path.is_file():
            return path
    return None


def sha256_from_cache(dependency: Dependency, cache: Path) -> str | None:
    """`sha256:` of the dependency's content, from the cache; None when (part of) it is not there."""
    if dependency.md5.endswith(".dir"):
        return _directory_sha256(dependency, cache)
    digest = _file_sha256(cache, dependency.md5, dependency.legacy, dependency.path)
    return f"sha256:{digest}" if digest else None


def _file_sha256(cache: Path, md5: str, legacy: bool, what: str) -> str | None:
    path = cached_object(cache, md5, legacy)
    if path is None:
        return None
    hashes = file_digests.file_hashes(path)
    if md5 not in (hashes.md5, hashes.md5_text if legacy else hashes.md5):
        raise LockError(f"data {what!r}: the DVC cache object {path} does not match its md5 {md5}")
    return hashes.sha256


def _directory_sha256(dependency: Dependency, cache: Path) -> str | None:
    listing = cached_object(cache, dependency.md5, dependency.legacy)
    if listing is None:
        return None
    try:
        members = json.loads(listing.read_text(encoding="utf-8"))
        files = [(str(m["relpath"]), str(m["md5"])) for m in members]
    except (ValueError, KeyError, TypeError) as error:
        raise LockError(f"data {dependency.path!r}: {listing} is not a DVC directory listing") from error
    hashed: list[tuple[str, str]] = []
    for relpath, md5 in files:
        digest = _file_sha256(cache, md5, dependency.legacy, f"{dependency.path}/{relpath}")
        if digest is None:
            return None  # partly cached: DVC's md5 of the whole is all that can be said
        hashed.append((relpath.replace("\\", "/"), digest))
    return artifact_digest.tree_digest(hashed)
