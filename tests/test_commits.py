"""Commit messages: subjects of at most 72 characters, a blank line before the body.

The commit-msg hook (.githooks/commit-msg, installed by `make setup`) refuses a bad message when it
is written; this test holds every commit made since the hook landed to the same rule, so a commit
made without the hook is caught too. History before the hook is left as it was written.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HOOK = REPO_ROOT / ".githooks" / "commit-msg"
INSTALL = REPO_ROOT / ".githooks" / "install"


def git(*args: str, cwd: Path = REPO_ROOT, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    git("init", "-q", str(tmp_path), cwd=tmp_path)
    result = subprocess.run(["sh", str(INSTALL)], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout == "" and (tmp_path / ".git" / "hooks" / "commit-msg").is_file()
    return tmp_path


def test_installed_hook_refuses_a_long_subject(repository: Path) -> None:
    long_subject = "Rescore the fleet when a model is promoted and the registry changes its mind"
    assert len(long_subject) == 76
    refused = git("commit", "--allow-empty", "-m", long_subject, cwd=repository, check=False)
    assert refused.returncode == 1
    assert "the subject has 76 characters; at most 72" in refused.stderr
    assert git("rev-list", "--all", cwd=repository, check=False).stdout == ""  # nothing was committed


def test_installed_hook_accepts_72_characters_and_wants_a_blank_line(repository: Path) -> None:
    subject = "x" * 72
    accepted = git(
        "commit", "--allow-empty", "-m", subject, "-m", "Why and what was measured.", cwd=repository
    )
    assert accepted.returncode == 0
    assert git("log", "-1", "--format=%s", cwd=repository).stdout.strip() == subject
    message = repository / "message.txt"
    message.write_text("Short subject\nbody glued to the subject\n")
    refused = git("commit", "--allow-empty", "-F", str(message), cwd=repository, check=False)
    assert refused.returncode == 1 and "blank line between the subject and the body" in refused.stderr


def test_install_keeps_someone_elses_hook(repository: Path) -> None:
    theirs = repository / ".git" / "hooks" / "commit-msg"
    theirs.write_text("#!/bin/sh\nexit 0\n")
    result = subprocess.run(["sh", str(INSTALL)], cwd=repository, capture_output=True, text=True, check=True)
    assert "exists and differs; left as it is" in result.stdout
    assert theirs.read_text() == "#!/bin/sh\nexit 0\n"


def commits_since_the_hook() -> list[tuple[str, str]]:
    """(hash, message) of the commit that added the hook and of every commit descended from it."""
    if shutil.which("git") is None or git("rev-parse", "--git-dir", check=False).returncode != 0:
        pytest.skip("not a git checkout: no history to check")
    added = git("log", "--diff-filter=A", "--format=%H", "--", ".githooks/commit-msg").stdout.split()
    if not added:
        pytest.skip("the commit-msg hook is not committed yet")
    first = added[-1]  # the oldest commit that added it
    descendants = git("rev-list", "--ancestry-path", f"{first}..HEAD").stdout.split()
    return [(commit, git("log", "-1", "--format=%B", commit).stdout) for commit in [first, *descendants]]


def test_commits_since_the_hook_landed_have_short_subjects() -> None:
    import runpy

    problems = runpy.run_path(str(HOOK))["problems"]
    bad = {commit[:10]: found for commit, message in commits_since_the_hook() if (found := problems(message))}
    assert bad == {}
