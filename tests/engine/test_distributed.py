"""Multi-process training on CPU (gloo): exact resume of a 2-rank run, and the launcher/env helpers."""
import os

import pytest

from gemseg.engine import distributed as du
from gemseg.modeling.checkpoint import read_checkpoint

from .helpers import make_dataset, tiny_cfg


def _train_worker(cfg, resume, stop_at):
    """Spawned by du.launch (a module-level function: spawn pickles it by name)."""
    from gemseg.engine.train_loop import train

    try:
        train(cfg, resume=resume, stop_at=stop_at)
    finally:
        du.cleanup()


def test_single_process_environment():
    assert du.env_world_size() == int(os.environ.get("WORLD_SIZE", "1"))
    info = du.init_from_env("cpu") if du.env_world_size() == 1 else du.DistInfo()
    assert info.is_main and not info.enabled
    assert du.all_reduce_mean({"a": 2.0}, None) == {"a": 2.0}
    assert du.broadcast_object(5) == 5


@pytest.mark.slow  # 3 launches of 2 spawned processes: ~60 s on 2 shared cores
def test_two_rank_run_resumes_exactly(tmp_path, monkeypatch):
    """Every rank's RNG state is in the checkpoint: a 2-rank run killed after iteration 3 of 4 and resumed ends
    with the same weights as the straight run."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = make_dataset(tmp_path / "data", n=4, size=64)
    common = ("SOLVER.MAX_ITER", "4", "INPUT.COLOR_AUG_SSD", "True")
    a = tiny_cfg(tmp_path / "a", data, *common)
    du.launch(_train_worker, 2, (a, False, None))
    b = tiny_cfg(tmp_path / "b", data, *common, "SOLVER.CHECKPOINT_PERIOD", "2")
    du.launch(_train_worker, 2, (b, False, 3))
    assert not (tmp_path / "b" / "model_final.pth").exists()
    du.launch(_train_worker, 2, (b, True, None))
    wa = read_checkpoint(tmp_path / "a" / "model_final.pth").state_dict
    wb = read_checkpoint(tmp_path / "b" / "model_final.pth").state_dict
    diff = max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa if wa[k].is_floating_point())
    assert diff == 0.0
