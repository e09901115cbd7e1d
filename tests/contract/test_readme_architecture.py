"""The README's architecture section matches the tree: every path it names exists, and every
top-level directory and every package of the server and the clients is described there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH_TOKEN = re.compile(r"(?<![\w.-])((?:[\w.-]+/)+[\w.-]*|[\w-]+\.(?:py|yaml|toml|mjs|ts|md))(?![\w/-])")


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Architecture\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def _tracked() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return listed.stdout.splitlines()


def test_every_path_the_architecture_section_names_exists() -> None:
    section, tracked = _section(), _tracked()
    top = {f.split("/", 1)[0] for f in tracked if "/" in f}
    tokens = set(PATH_TOKEN.findall(section))
    full = {t for t in tokens if t.split("/", 1)[0] in top}  # not prose such as "HTTP/2"
    assert {"server/transport/policy.py", "server/domain/", "clients/", "web/"} & full
    missing = sorted(t for t in full if not (ROOT / t).exists())
    assert missing == [], f"the README's architecture section names paths that do not exist: {missing}"
    # A bare file name ("codes.py") must be some tracked file's name.
    names = {Path(f).name for f in tracked}
    unknown = sorted(t for t in tokens if "/" not in t and t not in names)
    assert unknown == [], f"the README's architecture section names files that do not exist: {unknown}"


def test_every_top_level_directory_and_package_is_described() -> None:
    section = _section()
    tracked = _tracked()
    top = {f.split("/", 1)[0] for f in tracked if "/" in f and not f.startswith(".")}
    packages = {
        "/".join(f.split("/")[:2])
        for f in tracked
        if f.startswith(("server/", "clients/")) and f.count("/") >= 2
    }
    expected = {f"{d}/" for d in top | packages}
    assert "server/transport/" in expected and "protos/" in expected
    undescribed = sorted(d for d in expected if d not in section)
    assert undescribed == [], (
        f"directories the README's architecture section does not describe: {undescribed}"
    )
