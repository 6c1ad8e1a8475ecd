"""The files generated from the models, and the drift check `modelledger crds --check` and the tests use."""

from __future__ import annotations

from pathlib import Path

from modelledger.api.apidocs import api_reference
from modelledger.api.crdgen import crds, render

DOCS_FILE = Path("docs/api.md")


def generated_files(crd_dir: Path = Path("crds"), docs_file: Path | None = DOCS_FILE) -> dict[Path, str]:
    """Each generated file's path (relative to where it is written) and its exact content."""
    files = {crd_dir / name: render(document) for name, document in crds().items()}
    if docs_file is not None:
        files[docs_file] = api_reference()
    return files


def stale_files(root: Path, files: dict[Path, str]) -> list[Path]:
    """The files under `root` that are missing or differ from what the models generate."""
    return sorted(
        path
        for path, text in files.items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text
    )


def write_files(root: Path, files: dict[Path, str]) -> list[Path]:
    """Write the generated files under `root`; return the ones whose content changed."""
    changed = stale_files(root, files)
    for path in changed:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(files[path], encoding="utf-8")
    return changed
