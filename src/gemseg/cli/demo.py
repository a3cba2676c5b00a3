"""``gem demo``: serve the glass-segmentation web page (Gradio) on this machine.

    gem demo                                   # bundled gem-lite-synth on http://127.0.0.1:7860
    gem demo --model gem-tiny-gsds --port 8080
    gem demo --config gem-tiny --weights model_final.pth --host 0.0.0.0
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time

from gemseg.errors import GemsegError


def add_parser(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_text,
        description=help_text + ". Upload, paste or photograph an image (or several, or a short video) and see the "
        "glass overlay, mask and probability map; the page also serves the API endpoint /segment. Needs the "
        "optional extra: pip install 'gemseg[demo]'.",
    )
    g = p.add_argument_group("model")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--model", "-m", metavar="NAME",
                     help="the default model of the page: a bundled or downloaded zoo model (default: gem-lite-synth); "
                     "the menu offers every model available offline")
    src.add_argument("--weights", "-w", help="a weights file instead (.safetensors, official .pth/.pkl with --config)")
    g.add_argument("--config", "-c", help="the config of --weights (official YAML or a shipped name such as gem-tiny)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda[:N] or mps (default: auto)")
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for the network)")
    s.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    s.add_argument("--share", action="store_true",
                   help="also open a public gradio.live link for 72 hours (contacts Gradio's servers)")
    s.add_argument("--concurrency", type=int, default=1,
                   help="requests computed at once; the others wait in the queue (default: 1)")
    s.add_argument("--cache-size", type=int, default=2,
                   help="models kept loaded at once when users switch models (default: 2)")
    return p


def _check_gradio() -> None:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise GemsegError("the demo needs Gradio: pip install 'gemseg[demo]'") from None


def _check_port_free(host: str, port: int) -> None:
    """Fail before loading anything when the address is taken."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no conflict
            s.bind((host, port))
    except OSError as e:
        raise GemsegError(f"cannot serve on {host}:{port}: {e.strerror or e} (choose another --port)") from None


def _stop_on_sigterm():
    """``kill PID`` (SIGTERM, as from service managers and test harnesses) stops the server like Ctrl-C does,
    so the download folder is removed. Returns the previous handler (None outside the main thread)."""
    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a repeated SIGTERM must not cut the clean-up short
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, stop)


def run(args) -> int:
    if args.config and not args.weights:
        raise GemsegError("--config goes with --weights (for a zoo model use --model NAME)")
    if args.concurrency < 1 or args.cache_size < 1:
        raise GemsegError("--concurrency and --cache-size must be >= 1")
    if not 0 < args.port < 65536:
        raise GemsegError(f"--port must lie in 1..65535, got {args.port}")
    if args.weights and not os.path.exists(args.weights):
        raise GemsegError(f"weights file not found: {args.weights}")
    _check_port_free(args.host, args.port)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    _check_gradio()
    t0 = time.perf_counter()
    from gemseg.demo.app import create_app, launch_options
    from gemseg.demo.models import DEFAULT_MODEL, ModelSpec

    spec = (ModelSpec(weights=args.weights, config=args.config) if args.weights
            else ModelSpec(name=args.model or DEFAULT_MODEL))
    print(f"gem demo: loading {spec.label} ...", file=sys.stderr)
    previous = _stop_on_sigterm()
    try:
        demo = create_app(spec, device=args.device, concurrency=args.concurrency, cache_size=args.cache_size)
        try:
            demo.launch(server_name=args.host, server_port=args.port, share=args.share, prevent_thread_lock=True,
                        quiet=True, **launch_options())
            print(f"gem demo: {spec.label} ready in {time.perf_counter() - t0:.1f} s at {demo.local_url}"
                  + (f" and {demo.share_url}" if demo.share_url else "") + " (Ctrl-C to stop)", file=sys.stderr)
            demo.block_thread()
        except OSError as e:  # port taken meanwhile, address not available
            raise GemsegError(f"cannot serve on {args.host}:{args.port}: {e}") from None
        finally:
            demo.close()
            demo.gemseg_store.cleanup()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print("gem demo: stopped", file=sys.stderr)
    return 0
