"""Fixtures shared by the CLI tests."""
import pytest

from tests.inference.tiny import tiny_weights


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """The tiny GEM as a self-describing .safetensors (see tests/inference/tiny.py)."""
    return tiny_weights(tmp_path_factory.mktemp("weights"))
