#!/usr/bin/env python3
"""Keep the repository URL in ONE place (``URL = "..."`` in setup.py) and everything else in step.

    python scripts/set_repo_url.py                        # refresh from setup.py's URL
    python scripts/set_repo_url.py https://github.com/me/ganlib   # change setup.py's URL, then refresh
    python scripts/set_repo_url.py --check                # exit 1 if anything disagrees (CI)
    python scripts/set_repo_url.py --branch v0.2.0        # badges point at a tag instead of main

What it rewrites, as text (every other byte of each file stays as it is):

- each notebook's Open-in-Colab badge (``notebooks/<name>.ipynb`` and its jupytext twin ``<name>.py``)
  so that it points at that notebook's own path: ``.../github/<owner>/<repo>/blob/<branch>/notebooks/<name>.ipynb``;
- the ``REPO_URL = "..."`` line of each notebook's setup cell (what ``pip install "git+<REPO_URL>"`` uses);
- the badge block between ``<!-- badges:start -->`` and ``<!-- badges:end -->`` in README.md and
  docs/colab.md. A file without the markers is left alone and the block to add is printed.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BADGE_IMG = "https://colab.research.google.com/assets/colab-badge.svg"
START, END = "<!-- badges:start -->", "<!-- badges:end -->"
MARKED_FILES = ("README.md", "docs/colab.md")

_URL_LINE = re.compile(r'^URL = "([^"]*)"', re.M)
# A Colab link to any GitHub notebook; ends at a quote, bracket, space or (JSON) backslash.
_COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^\s\"'()<>\\]+")
# REPO_URL = "..." in a .py, or REPO_URL = \"...\" inside the JSON of an .ipynb.
_REPO_LINE = re.compile(r'(REPO_URL = \\?")([^"\\]*)(\\?")')
_GITHUB = re.compile(r"^https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)(?:\.git)?/?$")

# One line of text per notebook in the badge blocks.
DESCRIPTIONS = {
    "train": "train in resumable chunks, flags in a widget panel, previews inline",
    "prepare_faces": "videos/photos -> aligned faces + eye masks on Drive, with a report",
    "convert": "apply a trained model to photos and videos (A -> B or B -> A)",
}


def read_url(root: Path = ROOT) -> str:
    """The URL in setup.py (the one place it is kept)."""
    m = _URL_LINE.search((root / "setup.py").read_text(encoding="utf-8"))
    if not m:
        raise SystemExit(f'{root / "setup.py"}: no line `URL = "..."` found; add one at top level')
    return m.group(1)


def github_path(url: str) -> str:
    """``https://github.com/owner/repo(.git)`` -> ``owner/repo``; other hosts cannot have Colab badges."""
    m = _GITHUB.match(url.strip())
    if not m:
        raise SystemExit(f"{url!r} is not a GitHub repository URL (https://github.com/<owner>/<repo>); "
                         "Open-in-Colab badges only work for GitHub")
    return f"{m.group(1)}/{m.group(2)}"


def colab_link(url: str, name: str, branch: str = "main") -> str:
    """The Open-in-Colab link of ``notebooks/<name>.ipynb``."""
    return f"https://colab.research.google.com/github/{github_path(url)}/blob/{branch}/notebooks/{name}.ipynb"


def notebook_names(root: Path = ROOT) -> list[str]:
    """Notebook names in the order a user meets them (train, prepare_faces, convert), then the rest."""
    found = {p.stem for p in (root / "notebooks").glob("*.ipynb")}
    return [n for n in DESCRIPTIONS if n in found] + sorted(found - set(DESCRIPTIONS))


def rewrite_notebook_text(text: str, url: str, name: str, branch: str = "main") -> str:
    """Point every Colab link at this notebook's own path and set REPO_URL (works on .ipynb JSON and .py)."""
    text = _COLAB_LINK.sub(colab_link(url, name, branch), text)
    return _REPO_LINE.sub(lambda m: m.group(1) + url + m.group(3), text)


def badge_block(url: str, names: list[str], branch: str = "main") -> str:
    lines = [START]
    for name in names:
        desc = DESCRIPTIONS.get(name, "")
        lines.append(f"[![Open In Colab]({BADGE_IMG})]({colab_link(url, name, branch)}) "
                     f"**{name}.ipynb**" + (f": {desc}" if desc else "") + "  ")
    lines.append(END)
    return "\n".join(lines)


def rewrite_marked_text(text: str, block: str) -> str | None:
    """Replace the block between the markers; None when the markers are missing."""
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        return None
    return text[:i] + block + text[j + len(END):]


def plan(root: Path = ROOT, url: str | None = None, branch: str = "main") -> tuple[dict, list[str]]:
    """``({path: new text} for files that would change, [notes])`` without writing anything."""
    url = url or read_url(root)
    github_path(url)  # fail early on a non-GitHub URL
    changes, notes = {}, []
    setup = root / "setup.py"
    text = setup.read_text(encoding="utf-8")
    new = _URL_LINE.sub(f'URL = "{url}"', text, count=1)
    if new != text:
        changes[setup] = new
    names = notebook_names(root)
    for name in names:
        for path in (root / "notebooks" / f"{name}.ipynb", root / "notebooks" / f"{name}.py"):
            if not path.exists():
                continue
            text = path.read_text(encoding="utf-8")
            if not _COLAB_LINK.search(text):
                notes.append(f"{path.relative_to(root)}: no Open-in-Colab badge found (expected in the first cell)")
            if not _REPO_LINE.search(text):
                notes.append(f"{path.relative_to(root)}: no REPO_URL line found in the setup cell")
            new = rewrite_notebook_text(text, url, name, branch)
            if new != text:
                changes[path] = new
    block = badge_block(url, names, branch)
    for rel in MARKED_FILES:
        path = root / rel
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        new = rewrite_marked_text(text, block)
        if new is None:
            notes.append(f"{rel}: no badge markers; add these lines where the badges belong:\n{block}")
        elif new != text:
            changes[path] = new
    return changes, notes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("new_url", nargs="?", help="new repository URL (written to setup.py first)")
    ap.add_argument("--branch", default="main", help="branch or tag the badges open (default main)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file disagrees")
    ap.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    changes, notes = plan(args.root, args.new_url, args.branch)
    for note in notes:
        print("note:", note)
    if args.check:
        for path in changes:
            print(f"out of date: {path.relative_to(args.root)}")
        if changes:
            print("run: python scripts/set_repo_url.py")
        return 1 if changes else 0
    for path, text in changes.items():
        path.write_text(text, encoding="utf-8")
        print(f"updated {path.relative_to(args.root)}")
    if not changes:
        print(f"everything already points at {args.new_url or read_url(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
