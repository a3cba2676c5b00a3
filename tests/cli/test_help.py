"""``--help`` of every ``gem`` command: each option explained, defaults shown once, no reStructuredText markup."""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gemseg.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]
# "(default: X)", "default: X", "default (…)" or "default = X" state a default; "the default model" does not
STATED_DEFAULT = re.compile(r"\(default\b|\bdefault\s*[:(=]", re.I)


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = sorted(_subparsers())


def test_every_command_is_walked():
    assert {"predict", "eval", "train", "synth", "bench", "export"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_rules(command):
    sub = _subparsers()[command]
    formatter = sub._get_formatter()
    text = sub.format_help()
    assert "`" not in text, [ln for ln in text.splitlines() if "`" in ln]
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        name = action.option_strings[0] if action.option_strings else action.dest
        assert action.help and action.help.strip(), f"gem {command} {name} has no help"
        shown = formatter._expand_help(action)
        defaults = STATED_DEFAULT.findall(shown)
        assert len(defaults) <= 1, f"gem {command} {name}: default stated {len(defaults)} times: {shown!r}"
        assert "(default: None)" not in shown and "(default: False)" not in shown, (command, name, shown)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"usage: gem {command}" in capsys.readouterr().out


def test_python_dash_m_gemseg():
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "gemseg", "--version"], capture_output=True, text=True, env=env)
    assert res.returncode == 0 and res.stdout.startswith("gemseg "), res.stderr
    res = subprocess.run([sys.executable, "-m", "gemseg", "predict", "--help"], capture_output=True, text=True,
                         env=env)
    assert res.returncode == 0 and "usage: gem predict" in res.stdout
