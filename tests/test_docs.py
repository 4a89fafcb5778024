"""The repository stands on its own: no file cites a notes file that is not part of it.

The facts the code and the replication files rely on live in docs/papers.md, with the papers
cited; a citation of an outside sheet (by file name, by section sign, or by a path out of the
checkout) would send a reader somewhere they cannot follow.
"""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Built from pieces so that this file does not match itself.
SHEET = "REFER" + "ENCE"
OUTSIDE = re.compile("|".join([
    SHEET + r"(\.md|\s*(§|Sec\b|\"))",  # the sheet by file name, by section (§ or Sec.) or by heading
    "DESIGN" + r"\.md",
    "STYLE" + r"\.md",
    r"\.\./" + "shared",
    "/work/" + "shared",
]))


def project_files() -> list:
    """Tracked files and new ones git does not ignore, as a fresh clone (plus work in progress) has them."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [f for f in out.splitlines() if not f.startswith("reports/") and (ROOT / f).is_file()]


def test_no_file_cites_a_notes_file_outside_the_repository():
    hits = []
    for name in project_files():
        text = (ROOT / name).read_bytes().decode("utf-8", errors="ignore")
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{name}:{number}: {line.strip()}")
    assert not hits, "cite the paper and docs/papers.md instead:\n" + "\n".join(hits)


def test_the_pattern_catches_each_form_of_citation():
    for cited in [f"see {SHEET}.md §4", f"({SHEET} §0)", f"({SHEET} Sec. 0)", f'({SHEET} "FID protocols")',
                  "DESIGN" + ".md", "STYLE" + ".md", "../" + "shared/x"]:
        assert OUTSIDE.search(cited), cited
    for fine in ["reference_set", f"{SHEET}_SET = 1", "docs/papers.md §4", "/shared/diffrepro"]:
        assert not OUTSIDE.search(fine), fine


def test_papers_doc_is_linked_from_the_readme():
    assert (ROOT / "docs" / "papers.md").is_file()
    assert "docs/papers.md" in (ROOT / "README.md").read_text()


def test_license_and_citation_file_agree():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["title"].startswith("diffrepro")
    assert citation["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1)
    assert citation["version"] == version
