"""The agent skill: `gemini-pool skill` prints share/skill/SKILL.md as built
into the binary, its front matter is YAML with a name and a description, and
`skill install` writes it where agents look for skills."""

from __future__ import annotations

import os
import subprocess

import yaml

SOURCE_ROOT = os.environ.get("GKP_SOURCE_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_ROOT = os.environ.get("GKP_BUILD_ROOT", os.path.join(SOURCE_ROOT, "build"))
BINARY = os.path.join(BUILD_ROOT, "src", "cli", "gemini-pool")
SKILL = os.path.join(SOURCE_ROOT, "share", "skill", "SKILL.md")


def run(*args, env=None, cwd=None):
    return subprocess.run([BINARY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, cwd=cwd, timeout=60)


def front_matter(text: str) -> tuple:
    assert text.startswith("---\n")
    head, sep, body = text[4:].partition("\n---\n")
    assert sep, "no closing --- after the front matter"
    return yaml.safe_load(head), body


def test_skill_prints_the_file():
    r = run("skill")
    assert r.returncode == 0 and r.stderr == b""
    with open(SKILL, "rb") as f:
        assert r.stdout == f.read()


def test_front_matter_is_yaml_with_name_and_description():
    meta, body = front_matter(run("skill").stdout.decode("utf-8"))
    assert meta["name"] == "gemini-pool"
    assert isinstance(meta["description"], str) and len(meta["description"]) > 100
    assert "secret" in meta["description"].lower()
    for must in ("auto/", ".out", ".err", "status/", "gemini-pool ask", "wait", "&",
                 "Council of experts", "Never put secrets in a prompt"):
        assert must in body, must


def test_install_default_and_dir(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    r = run("skill", "install", env=env)
    target = home / ".claude" / "skills" / "gemini-pool" / "SKILL.md"
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == str(target)
    assert target.read_bytes() == run("skill").stdout
    r = run("skill", "install", "--dir", str(tmp_path / "d" / "e"), env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "e" / "SKILL.md").read_bytes() == target.read_bytes()
    # Installing again replaces it whole.
    (tmp_path / "d" / "e" / "SKILL.md").write_text("old")
    assert run("skill", "install", f"--dir={tmp_path / 'd' / 'e'}").returncode == 0
    assert (tmp_path / "d" / "e" / "SKILL.md").read_bytes() == target.read_bytes()
    assert sorted(os.listdir(tmp_path / "d" / "e")) == ["SKILL.md"]


def test_bad_use_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for args, words in ((["skill", "bogus"], "'bogus'"),
                        (["skill", "install", "--dir"], "--dir needs a value"),
                        (["skill", "install", "--nope"], "'--nope'"),
                        (["skill", "install", "--dir", str(blocker / "x")], str(blocker))):
        r = run(*args)
        err = r.stderr.decode()
        assert r.returncode != 0 and r.stdout == b"", args
        assert words in err and err.count("\n") == 1, (args, err)
    env = {k: v for k, v in os.environ.items() if k != "HOME"}
    r = run("skill", "install", env=env, cwd=str(tmp_path))
    assert r.returncode == 2 and b"--dir" in r.stderr
