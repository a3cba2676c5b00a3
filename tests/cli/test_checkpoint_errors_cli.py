"""Unreadable checkpoints: every format gives the same one-line error and exit code 2, in predict and eval."""
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from gemseg.cli.main import main
from tests.inference.tiny import photo, tiny_weights

NOT_A_CHECKPOINT = "file is truncated, corrupt or not a checkpoint"


def _broken_files(folder, good_safetensors):
    """name -> path of files that look like checkpoints by name but cannot be read."""
    data = good_safetensors.read_bytes()
    rng = np.random.default_rng(0)
    contents = {
        "truncated_header.safetensors": data[:5],
        "truncated.safetensors": data[: len(data) // 2],
        "random.safetensors": rng.bytes(4096),
        "random.pth": rng.bytes(4096),
        "random_pickle_like.pth": b"\x80\x02" + rng.bytes(4096),
        "random_zip_like.pth": b"PK\x03\x04" + rng.bytes(4096),
        "random.pkl": rng.bytes(4096),
    }
    paths = {}
    for name, blob in contents.items():
        paths[name] = folder / name
        paths[name].write_bytes(blob)
    return paths


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    folder = tmp_path_factory.mktemp("broken")
    return _broken_files(folder, tiny_weights(folder))


@pytest.fixture()
def dataset(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(photo(40, 48)).save(root / "images" / "a.png")
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(root / "masks" / "a.png")
    return root


NAMES = ["truncated_header.safetensors", "truncated.safetensors", "random.safetensors", "random.pth",
         "random_pickle_like.pth", "random_zip_like.pth", "random.pkl"]


@pytest.mark.parametrize("name", NAMES)
def test_predict_and_eval_reject_unreadable_checkpoint_in_one_line(name, broken, dataset, tmp_path, capsys):
    out = tmp_path / "out"
    for argv in (["predict", str(dataset / "images"), "--weights", str(broken[name]), "-o", str(out), "-q"],
                 ["eval", "--weights", str(broken[name]), "--dataset", str(dataset), "--no-progress"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"gem {argv[0]}: error: cannot read checkpoint {broken[name]}: {NOT_A_CHECKPOINT}")
        assert "Traceback" not in "\n".join(err) and "refusing to load Python objects" not in err[-1]
        assert len(err[-1]) < 300  # one readable line, not a paragraph from the reader
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_python_objects_in_a_pth_are_still_refused_as_such(tmp_path):
    """A real pickle with a class in it is a checkpoint-shaped file that we refuse for safety, not 'corrupt'."""
    import argparse

    import torch

    from gemseg.errors import CheckpointError
    from gemseg.modeling.checkpoint import read_checkpoint

    path = tmp_path / "objects.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1)}, path)
    assert zipfile.is_zipfile(path) and os.path.getsize(path) > 0
    with pytest.raises(CheckpointError, match="refusing to load Python objects"):
        read_checkpoint(path)
