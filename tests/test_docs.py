"""The pages a new user reads: every name the README and docs tell them to type exists, and the protocol the docs
state is the one the command enforces. (Figures: tests/test_render.py checks them against the results store.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from effdet_plugin.commands import cli, protocol

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"```(?:bash|console|python)?\n(.*?)```", re.DOTALL)
YAML_NAME = re.compile(r"\b((?:yolov5|yolo11|yolo26)[nslmx]_eff[\w.-]*?\.yaml)\b")


def _code(page: Path) -> str:
    return "\n".join(FENCE.findall(page.read_text(encoding="utf-8")))


def _yaml_names() -> set[str]:
    names = set()
    for page in PAGES:
        names |= {n for n in YAML_NAME.findall(page.read_text(encoding="utf-8")) if "{" not in n}
    return names


@pytest.mark.parametrize("name", sorted(_yaml_names()))
def test_every_shipped_name_on_the_pages_resolves(name):
    """A name such as yolo26n_effl0.yaml in the README or docs is one Ultralytics loads, from any folder."""
    from ultralytics.nn.tasks import yaml_model_load

    d = yaml_model_load(name)
    assert d.get("backbone") and d.get("head"), name


def _subcommands() -> set[str]:
    found = set()
    for page in PAGES:
        for line in _code(page).replace("\\\n", " ").splitlines():
            line = line.strip().lstrip("$ ").strip()
            for part in re.split(r"&&|\|", line):
                words = part.split("#")[0].split()  # a command's first two words need no shell quoting
                if len(words) > 1 and words[0] == "effdet-plugin" and not words[1].endswith(":"):  # not its output
                    found.add(words[1])
    return found


def test_the_pages_name_only_real_subcommands():
    named = _subcommands()
    assert named and named <= set(cli.COMMANDS), sorted(named - set(cli.COMMANDS))


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_subcommand_answers_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0 and f"effdet-plugin {command}" in capsys.readouterr().out


def test_the_readme_leads_with_the_two_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = FENCE.findall(text)
    assert blocks[0].startswith("pip install . && effdet-plugin demo-data demo && yolo train model=")
    assert blocks[1].strip() == 'pip install ".[test]" && pytest'
    assert len(text.splitlines()) <= 170


def test_ci_runs_the_readme_test_command():
    assert 'pip install ".[test]" && pytest\n' in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_the_docs_state_the_protocol_the_command_enforces():
    doc = protocol.__doc__
    rules = doc[doc.index("The protocol:") + len("The protocol:") :].strip().replace("``", "`")
    assert rules in (REPO / "docs" / "benchmarking.md").read_text(encoding="utf-8")
