"""The ``gem`` command: a thin shell over the Python API.

Each sub-command lives in its own module ``gemseg.cli.<name>`` exposing ``add_parser(subparsers)`` and
``run(args) -> int``; modules are imported lazily so that ``gem --help`` stays fast and one broken optional
dependency cannot take down the other commands.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# command name -> (module, one-line help)
COMMANDS = {
    "predict": ("gemseg.cli.predict", "segment glass in images, folders or videos"),
    "eval": ("gemseg.cli.evaluate", "score a model or saved masks with the paper's metrics"),
    "train": ("gemseg.cli.train", "train or fine-tune GEM (official configs, torchrun/DDP)"),
    "synth": ("gemseg.cli.synth", "build an S-GSD-style synthetic glass dataset"),
    "bench": ("gemseg.cli.bench", "measure FPS, latency and memory"),
    "export": ("gemseg.cli.export", "export the inference graph to ONNX"),
    "models": ("gemseg.cli.models", "list the model zoo and download models into the Hugging Face cache"),
    "push": ("gemseg.cli.push", "share a trained model on the Hugging Face Hub (save_pretrained layout)"),
    "demo": ("gemseg.cli.demo", "serve a web page to try glass segmentation (Gradio)"),
}


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


def _available_commands():
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:  # the command is not implemented in this version
                continue
            raise
        yield name, mod, help_text


def build_parser() -> argparse.ArgumentParser:
    from gemseg import __version__

    parser = argparse.ArgumentParser(
        prog="gem",
        description="gemseg: glass surface segmentation with GEM (pure PyTorch).",
    )
    parser.add_argument("--version", action="version", version=f"gemseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from gemseg.cli.help import HelpFormatter

    for name, mod, help_text in _available_commands():
        p = mod.add_parser(sub, name, help_text)
        p.formatter_class = HelpFormatter  # one help style for every command (defaults shown once, no markup)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    if extra and not getattr(args, "_accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "_accepts_extra", False):
        args.extra = extra
    import logging

    from gemseg.errors import GemsegError

    # commands may quieten the library logger for their run; leave the process as we found it (tests and
    # notebooks call main() in-process)
    lib_logger = logging.getLogger("gemseg")
    saved_level = lib_logger.level
    try:
        return int(args._run(args) or 0)
    except (GemsegError, CLIError) as e:
        print(f"gem {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ngem {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        lib_logger.setLevel(saved_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
