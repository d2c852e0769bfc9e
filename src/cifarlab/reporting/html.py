"""What report.html, compare.html and audit.html share: the page style and embedded pictures
(the pages are self-contained: a single file, no network; jinja2 templates, autoescaped)."""

from __future__ import annotations

import base64
from pathlib import Path

PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1150px;
       padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
table.kv th { background: #f5f5f5; }
tr.worst td { color: #c62828; font-weight: bold; }
.cols { display: flex; gap: 2rem; flex-wrap: wrap; }
figure { margin: 1.5rem 0; } figcaption { font-weight: bold; margin-bottom: 0.5rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""


def png_base64(path: Path) -> str:
    """A PNG file's bytes in base64, to embed in a page."""
    return base64.b64encode(path.read_bytes()).decode("ascii")
