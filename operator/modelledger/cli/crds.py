"""`modelledger crds`: write (or check) the CRDs and the API reference generated from the models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modelledger.api.generated import DOCS_FILE, generated_files, stale_files, write_files


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "crds",
        help="generate the CustomResourceDefinitions and docs/api.md from the API models",
        description="Generate crds/*.yaml and the API reference from the pydantic models.",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("crds"), help="where the CRDs go (default: crds)"
    )
    parser.add_argument(
        "--docs", type=Path, default=DOCS_FILE, help=f"where the API reference goes (default: {DOCS_FILE})"
    )
    parser.add_argument("--no-docs", action="store_true", help="do not write the API reference")
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if any file differs from what the models generate",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    files = generated_files(args.output_dir, None if args.no_docs else args.docs)
    root = Path.cwd()
    if args.check:
        stale = stale_files(root, files)
        for path in stale:
            sys.stderr.write(f"out of date: {path} (run `modelledger crds`)\n")
        return 1 if stale else 0
    for path in write_files(root, files):
        sys.stdout.write(f"wrote {path}\n")
    return 0
