"""The directory digest (modelledger-tree/v1, docs/lineage.md): order-free, and equal to the documented
coreutils recipe on real files, whatever the names and contents."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelledger.adapters import file_digests
from modelledger.core import artifact_digest

RECIPE = "find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum | sed 's|  \\./|  |' | sha256sum"

# Names as a model directory holds them: nested parts, dots, spaces, non-ASCII; never `/`-only tricks.
PART = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\x00"),
    min_size=1,
    max_size=12,
).filter(lambda part: part not in (".", "..") and len(part.encode()) < 200)
NAME = st.lists(PART, min_size=1, max_size=3).map("/".join)
HEX = st.binary(min_size=1, max_size=64).map(lambda b: hashlib.sha256(b).hexdigest())


def _prefix_free(names: list[str]) -> bool:
    """No name is a directory of another (a file and a directory cannot share a path)."""
    return not any(other.startswith(name + "/") for name in names for other in names)


@given(st.dictionaries(NAME, HEX, max_size=8).filter(lambda d: _prefix_free(list(d))), st.randoms())
def test_the_digest_does_not_depend_on_the_order_given(files: dict[str, str], shuffler: object) -> None:
    pairs = list(files.items())
    shuffled = pairs[:]
    shuffler.shuffle(shuffled)  # type: ignore[attr-defined]
    assert artifact_digest.tree_digest(pairs) == artifact_digest.tree_digest(shuffled)


@given(st.dictionaries(NAME, HEX, min_size=1, max_size=6).filter(lambda d: _prefix_free(list(d))))
def test_any_change_of_a_name_or_content_changes_the_digest(files: dict[str, str]) -> None:
    digest = artifact_digest.tree_digest(files.items())
    name, content = next(iter(files.items()))
    other = dict(files)
    other[name] = hashlib.sha256(content.encode()).hexdigest()
    assert artifact_digest.tree_digest(other.items()) != digest
    renamed = {(k + "x" if k == name else k): v for k, v in files.items()}
    if _prefix_free(list(renamed)) and len(renamed) == len(files):
        assert artifact_digest.tree_digest(renamed.items()) != digest


def test_the_manifest_is_sha256sum_lines_sorted_by_bytes() -> None:
    a, b = "a" * 64, "b" * 64
    # `B` (0x42) sorts before `a` (0x61), and `é` (0xc3 0xa9) after both: bytes, not a locale's order.
    lines = artifact_digest.manifest([("é", a), ("a/b", b), ("B", a)])
    assert lines == f"{a}  B\n{b}  a/b\n{a}  é\n".encode()
    assert artifact_digest.tree_digest([]) == "sha256:" + hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("name", ["", "/abs", "a//b", "./a", "a/../b", "line\nfeed", "back\\slash"])
def test_names_the_recipe_cannot_reproduce_are_refused(name: str) -> None:
    with pytest.raises(artifact_digest.UnsupportedName):
        artifact_digest.tree_digest([(name, "0" * 64)])


def test_a_bad_hash_or_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="not a lower-case hex sha256"):
        artifact_digest.tree_digest([("a", "A" * 64)])
    with pytest.raises(ValueError, match="given twice"):
        artifact_digest.tree_digest([("a", "0" * 64), ("a", "1" * 64)])


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="the recipe needs GNU coreutils and findutils")
@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(NAME, st.binary(max_size=300), max_size=6).filter(lambda d: _prefix_free(list(d))),
    st.lists(NAME, max_size=2),
)
def test_the_digest_of_real_files_equals_the_documented_shell_recipe(
    files: dict[str, bytes], empty_dirs: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "model"
        root.mkdir()
        for name in empty_dirs:  # directories without files add nothing
            if name not in files and _prefix_free([*files, name]):
                (root / name).mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
        recomputed = subprocess.run(
            ["bash", "-c", RECIPE], cwd=root, capture_output=True, text=True, check=True
        ).stdout.split()[0]
        assert file_digests.directory_digest(root) == f"sha256:{recomputed}"


def test_a_symbolic_link_is_refused_and_a_single_file_is_its_plain_sha256(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"weights")
    assert file_digests.path_digest(tmp_path / "model.onnx") == (
        "sha256:" + hashlib.sha256(b"weights").hexdigest()
    )
    (tmp_path / "link").symlink_to(tmp_path / "model.onnx")
    with pytest.raises(artifact_digest.UnsupportedName, match="symbolic link"):
        file_digests.directory_digest(tmp_path)
    (tmp_path / "link").unlink()
    assert file_digests.directory_digest(tmp_path, leave_out={"model.onnx"}) == artifact_digest.tree_digest(
        []
    )


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=7))
def test_dvc2_text_md5_reads_cr_lf_as_lf_across_chunks(content: bytes, chunk: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "f"
        path.write_bytes(content)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(file_digests, "CHUNK", chunk)
            hashes = file_digests.file_hashes(path)
    assert hashes.sha256 == hashlib.sha256(content).hexdigest()
    assert hashes.md5 == hashlib.md5(content).hexdigest()
    assert hashes.md5_text == hashlib.md5(content.replace(b"\r\n", b"\n")).hexdigest()
