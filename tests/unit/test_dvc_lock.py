"""dvc.lock as data references (adapters.dvc_lock): both lock layouts, both cache layouts, directories,
a corrupt cache, and DVC's md5 where the content is not cached. The repositories are laid out as DVC 3
and DVC 2 write them (`files/md5/ab/cdef…` and `ab/cdef…`, a directory as its JSON listing `….dir`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from modelledger.adapters import dvc_lock
from modelledger.core import artifact_digest

TRAIN = b"amount,label\r\n12.5,0\r\n99.0,1\r\n"
IMAGES = {"a.png": b"\x89PNG one", "sub/b.png": b"\x89PNG two"}


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def cache_put(cache: Path, digest: str, content: bytes, *, legacy: bool = False) -> None:
    where = cache / digest[:2] / digest[2:] if legacy else cache / "files" / "md5" / digest[:2] / digest[2:]
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_bytes(content)


def dvc3_repo(root: Path, *, cached: bool = True) -> Path:
    """A DVC 3 repository: a file and a directory dependency, a remote one, and a code file."""
    (root / ".dvc").mkdir(parents=True)
    cache = root / ".dvc" / "cache"
    listing = json.dumps([{"md5": md5(c), "relpath": n} for n, c in sorted(IMAGES.items())]).encode()
    dir_md5 = md5(listing) + ".dir"
    if cached:
        cache_put(cache, md5(TRAIN), TRAIN)
        cache_put(cache, dir_md5, listing)
        for content in IMAGES.values():
            cache_put(cache, md5(content), content)
    lock = {
        "schema": "2.0",
        "stages": {
            "prepare": {
                "cmd": "python prepare.py",
                "deps": [{"path": "data/train.csv", "hash": "md5", "md5": md5(TRAIN), "size": len(TRAIN)}],
            },
            "train": {
                "cmd": "python train.py",
                "deps": [
                    {"path": "data/train.csv", "hash": "md5", "md5": md5(TRAIN), "size": len(TRAIN)},
                    {"path": "data/images", "hash": "md5", "md5": dir_md5, "size": 18, "nfiles": 2},
                    {"path": "https://example.com/extra.csv", "etag": "abc"},
                ],
                "outs": [{"path": "model.pkl", "hash": "md5", "md5": "e" * 32}],
            },
        },
    }  # fmt: skip
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    return root / "dvc.lock"


def test_a_dvc3_lock_with_its_cache_gives_sha256_for_files_and_directories(tmp_path: Path) -> None:
    lock = dvc3_repo(tmp_path)
    found = dvc_lock.read(lock)
    tree = artifact_digest.tree_digest((n, sha(c)) for n, c in IMAGES.items())
    assert [(r.path, r.digest) for r in found.references] == [
        ("data/train.csv", f"sha256:{sha(TRAIN)}"),
        ("data/images", tree),
    ], "each dependency once, outputs left out"
    assert found.warnings == [
        "stage train: dependency 'https://example.com/extra.csv' left out: it has no md5 (not DVC-hashed)"
    ]
    only = dvc_lock.read(lock, stages=["prepare"])
    assert [r.path for r in only.references] == ["data/train.csv"]
    with pytest.raises(dvc_lock.LockError, match="no stage evaluate"):
        dvc_lock.read(lock, stages=["evaluate"])


def test_without_the_cache_dvcs_md5_is_kept_with_a_warning(tmp_path: Path) -> None:
    lock = dvc3_repo(tmp_path, cached=False)
    found = dvc_lock.read(lock)
    listing = json.dumps([{"md5": md5(c), "relpath": n} for n, c in sorted(IMAGES.items())]).encode()
    assert [r.digest for r in found.references] == [f"md5:{md5(TRAIN)}", f"md5:{md5(listing)}.dir"]
    assert "data 'data/train.csv': not in the DVC cache, DVC's md5 kept" in found.warnings


def test_a_cache_object_that_does_not_match_its_md5_is_an_error(tmp_path: Path) -> None:
    lock = dvc3_repo(tmp_path)
    cache_put(tmp_path / ".dvc" / "cache", md5(TRAIN), b"tampered")
    with pytest.raises(dvc_lock.LockError, match="does not match its md5"):
        dvc_lock.read(lock)


def test_a_dvc1_lock_with_a_dvc2_cache_reads_text_md5s(tmp_path: Path) -> None:
    """DVC 1/2: stages at the top, no `hash` field, objects at `ab/cdef…`, text hashed with LF ends."""
    cache = tmp_path / "elsewhere"
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text(f"[core]\n    remote = storage\n[cache]\n    dir = {cache}\n")
    text_md5 = md5(TRAIN.replace(b"\r\n", b"\n"))
    cache_put(cache, text_md5, TRAIN, legacy=True)
    (tmp_path / "dvc.lock").write_text(
        yaml.safe_dump(
            {"train": {"cmd": "python train.py", "deps": [{"path": "train.csv", "md5": text_md5}]}}
        )
    )
    found = dvc_lock.read(tmp_path / "dvc.lock")
    assert [(r.path, r.digest) for r in found.references] == [("train.csv", f"sha256:{sha(TRAIN)}")]
    assert found.warnings == []


@pytest.mark.parametrize("text", ["- not a mapping", "schema: '2.0'\nstages: 3\n", ": : :"])
def test_what_is_not_a_dvc_lock_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / "dvc.lock").write_text(text)
    with pytest.raises(dvc_lock.LockError):
        dvc_lock.read(tmp_path / "dvc.lock")
