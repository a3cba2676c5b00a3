"""Hugging Face Space entry point: the ``gem demo`` page with the bundled model ``gem-lite-synth``.

A Gradio Space runs ``python app.py`` from the repository root (see docs/demo.md); locally ``python app.py`` serves
the same page as ``gem demo``. The Space sets GRADIO_SERVER_NAME/GRADIO_SERVER_PORT, which ``launch`` reads.
"""
import sys
from pathlib import Path

try:
    import gemseg  # noqa: F401 - installed (pip install ".[demo]")
except ImportError:  # a Space runs the repository as it is: use its source tree
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from gemseg.demo.app import create_app, launch_options  # noqa: E402

demo = create_app()

if __name__ == "__main__":
    demo.launch(**launch_options())
