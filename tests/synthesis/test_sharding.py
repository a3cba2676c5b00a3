"""``gem synth --shard K/N``: the union of the shards is byte-identical to the unsharded run (manifest included)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gemseg.cli.main import main

ARGS = ["--num-images", "7", "--seed", "5", "--size", "64x48", "--val-fraction", "0.3", "--preview-masks",
        "--workers", "1", "-q"]


def tree(root: Path) -> dict:
    """Every file under ``root`` (hidden ones included) → its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "full"
    assert main(["synth", *ARGS, "--output", str(out)]) == 0
    return tree(out)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_union_of_shards_is_the_unsharded_set(tmp_path, capsys, unsharded, n):
    out = tmp_path / "sharded"
    for k in reversed(range(n)):  # any finishing order: the last one merges
        assert main(["synth", *ARGS, "--shard", f"{k}/{n}", "--output", str(out)]) == 0
        msg = capsys.readouterr().out
        assert f"shard {k}/{n}: {len(range(k, 7, n))} new" in msg
        assert ("merges the parts" in msg) == (k != 0)
    got = tree(out)
    assert got.keys() == unsharded.keys()  # no manifest part or partial file left
    assert [k for k in unsharded if got[k] != unsharded[k]] == []


def test_shard_resume_and_explicit_merge(tmp_path, capsys, unsharded):
    out = tmp_path / "sharded"
    assert main(["synth", *ARGS, "--shard", "1/2", "--output", str(out)]) == 0
    assert main(["synth", "--merge", str(out)]) == 2  # shard 0 has not run
    assert "0/2 have not finished" in capsys.readouterr().err
    # a shard killed mid-run: one of its images missing, a temporary file of a write left behind
    (out / "images/training/synth_0000005.jpg").unlink()
    stale = out / "images/training/.synth_0000005.jpg.k1ll3d.tmp.jpg"
    stale.write_bytes(b"half")
    assert main(["synth", *ARGS, "--shard", "1/2", "--output", str(out), "--skip-existing"]) == 0
    assert "shard 1/2: 1 new, 2 kept" in capsys.readouterr().out
    assert not stale.exists()
    assert main(["synth", *ARGS, "--shard", "0/2", "--output", str(out)]) == 0
    assert tree(out) == unsharded
    assert main(["synth", *ARGS, "--shard", "0/2", "--seed", "6", "--output", str(out)]) == 2  # other settings
    assert "different seed" in capsys.readouterr().err


def test_diffusion_engine_does_not_import_the_writer():
    """The writer builds the diffusion engine; the engine must not import the writer back (no import cycle)."""
    src = Path(__file__).resolve().parents[2] / "src/gemseg/synthesis/diffusion.py"
    imported = {node.module for node in ast.walk(ast.parse(src.read_text())) if isinstance(node, ast.ImportFrom)}
    assert "gemseg.synthesis.writer" not in imported and "gemseg.synthesis.errors" in imported
