"""The README and the docs site: short, generated tables in step with their JSON, the layout
page in step with the code, no development paths or commit hashes where users read."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import tables  # noqa: E402  (benchmarks/tables.py)

DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_generated_table_matches_its_json():
    assert tables.regenerate(check=True) == [], "run: python benchmarks/tables.py"


def test_a_changed_result_is_caught(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text("<!-- table bench cpu-2core.json -->\n| stale |\n<!-- end table -->\n")
    monkeypatch.setattr(tables, "FILES", [page])
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    assert tables.regenerate(check=True) == ["page.md"]
    tables.regenerate(check=False)
    assert "85.77% ± 0.10" in page.read_text() and tables.regenerate(check=True) == []


def test_the_readme_is_short_and_names_no_commit_or_clock_time():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert not re.findall(r"\b[0-9a-f]{7}\b", text), "a commit hash in the README"
    assert not re.findall(r"\b\d{1,2}:\d{2} UTC\b", text), "a clock time in the README"


def test_user_facing_docs_name_no_development_path():
    for page in DOCS:
        assert "shared/data" not in page.read_text(), f"{page}: say --data-dir PATH"


def test_the_architecture_page_lists_every_module_and_only_those():
    page = (ROOT / "docs" / "architecture.md").read_text()
    layout = page.split("## Layout", 1)[1]
    package = ROOT / "src" / "cifarlab"
    modules = {str(p.relative_to(package)) for p in package.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    listed = set()
    for cell in re.findall(r"^\| ([^|]+) \|", layout, re.MULTILINE):
        names = re.findall(r"`([\w/]+\.py)`", cell)
        folder = next((n.rsplit("/", 1)[0] for n in names if "/" in n), "")
        listed |= {n if "/" in n else f"{folder}/{n}".lstrip("/") for n in names}
    assert modules - listed == set(), "modules missing from the Layout"
    assert listed - modules == set(), "the Layout names modules that do not exist"
