"""``gem demo`` arguments and start-up errors (no server is left running), and the Space's ``app.py``."""
from __future__ import annotations

import runpy
import socket

import pytest

from gemseg.cli.main import main
from tests.conftest import REPO_ROOT


def _run(capsys, *argv):
    code = main(["demo", *map(str, argv)])
    return code, capsys.readouterr().err


def test_help_lists_demo_and_explains_the_page(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "/segment" in out and "--share" in out and "gemseg[demo]" in out and "`" not in out


def test_argument_errors_are_one_line(capsys, tmp_path):
    code, err = _run(capsys, "--config", "gem-tiny")
    assert code == 2 and "--config goes with --weights" in err
    code, err = _run(capsys, "--weights", tmp_path / "missing.safetensors")
    assert code == 2 and "weights file not found" in err
    code, err = _run(capsys, "--port", "70000")
    assert code == 2 and "--port must lie in 1..65535" in err
    with pytest.raises(SystemExit):
        main(["demo", "--model", "a", "--weights", "b"])  # argparse: mutually exclusive
    assert "not allowed with" in capsys.readouterr().err


def test_taken_port_fails_before_loading(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        code, err = _run(capsys, "--port", s.getsockname()[1])
    assert code == 2 and "cannot serve on 127.0.0.1" in err and "choose another --port" in err
    assert "loading" not in err  # failed before the model load


def test_unknown_model_is_a_one_line_error(capsys):
    pytest.importorskip("gradio", reason="the demo needs the optional extra .[demo] (gradio)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, err = _run(capsys, "--model", "no-such-model", "--port", port)
    assert code == 2 and "unknown model 'no-such-model'" in err and "gem-lite-synth" in err
    assert "Traceback" not in err


def test_space_app_builds_the_page_with_the_bundled_model():
    gr = pytest.importorskip("gradio", reason="the demo needs the optional extra .[demo] (gradio)")
    app = runpy.run_path(str(REPO_ROOT / "app.py"))  # not __main__: builds the page, does not serve
    demo = app["demo"]
    try:
        assert isinstance(demo, gr.Blocks)
        dropdown = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown))
        assert dropdown.value == "gem-lite-synth"
        names = [d.api_name for d in demo.fns.values()]
        assert "segment" in names
    finally:
        demo.gemseg_store.cleanup()
