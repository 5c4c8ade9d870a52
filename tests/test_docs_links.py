"""Every relative link in README.md and docs/*.md points at a file that exists, and every
``#anchor`` at a heading of that file (as GitHub renders its id) or an explicit
``<a id="...">``; so do the plain-text references ``docs/NAME.md#anchor`` there and in the
code, suites and examples (docstrings, messages, check citations)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MENTION = re.compile(r"(?<![\w/.])docs/[\w.-]+\.md(?:#[\w-]+)?")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (a ``# comment`` in a code block is no heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's id of a heading: the rendered text lower-cased, punctuation but ``-`` and ``_``
    dropped, spaces as ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The ids of a page: its headings' (``-1``, ``-2``, ... for repeats) and explicit ones."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose(page.read_text(encoding="utf-8")):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
        found.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
    return found


def targets(page: Path) -> list[tuple[str, Path, str]]:
    """(as written, file, anchor) of every relative link and ``docs/...md`` mention on a page."""
    out = []
    for line in prose(page.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            path, _, anchor = target.partition("#")
            out.append((target, (page.parent / path).resolve() if path else page, anchor))
        for mention in MENTION.findall(re.sub(LINK, "", line)):
            path, _, anchor = mention.partition("#")
            out.append((mention, REPO / path, anchor))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_exists(page):
    broken = []
    for written, path, anchor in targets(page):
        if not path.exists():
            broken.append(f"{written}: no such file")
        elif anchor and (path.suffix != ".md" or anchor not in anchors(path)):
            broken.append(f"{written}: no anchor #{anchor} in {path.relative_to(REPO)}")
    assert not broken, broken


def test_every_docs_reference_in_the_code_exists():
    sources = [p for d in ("harness", "suites", "tests", "benchmarks", "examples") for p in (REPO / d).rglob("*")
               if p.suffix in (".py", ".yaml", ".yml") and p != Path(__file__).resolve()]
    broken = []
    for source in sources:
        for mention in MENTION.findall(source.read_text(encoding="utf-8")):
            path, _, anchor = mention.partition("#")
            if not (REPO / path).exists() or (anchor and anchor not in anchors(REPO / path)):
                broken.append(f"{source.relative_to(REPO)}: {mention}")
    assert not broken, broken


def test_the_slugs_are_githubs():
    assert slug("Methods (`harness/methods/`)") == "methods-harnessmethods"
    assert slug("Sample quality, timing and memory (`harness/metrics/`)") == \
        "sample-quality-timing-and-memory-harnessmetrics"
    assert slug("Layer families (optional extras)") == "layer-families-optional-extras"
    assert slug("σ_min of a convolution") == "σ_min-of-a-convolution"
