"""The trainer end to end on tiny synthetic data: learning, exact resume, checkpoint files, accumulation,
non-finite steps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gemseg
from gemseg.engine import train_loop
from gemseg.engine.checkpointer import Checkpointer, load_training_state
from gemseg.engine.logging import TIMING_KEYS, read_metrics
from gemseg.engine.train_loop import NonFiniteLossError, seed_everything, train
from gemseg.errors import CheckpointError
from gemseg.modeling.build import build_model
from gemseg.modeling.checkpoint import official_state_dict, read_checkpoint

from .helpers import make_dataset, tiny_cfg


def _weights(path: Path) -> dict:
    return read_checkpoint(path).state_dict


def _loss_rows(out: Path) -> list:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS}
            for r in read_metrics(out / "metrics.jsonl") if "total_loss" in r]


# ---------------------------------------------------------------------------------------------------------------
def test_overfits_eight_images_to_iou_090(tmp_path):
    """Issue 5: a tiny config overfits 8 small synthetic images to IoU >= 0.9 within a couple of CPU minutes."""
    data = make_dataset(tmp_path / "data", n=8, size=64, splits=("training", "validation"), same_images=True)
    cfg = tiny_cfg(tmp_path / "out", data, "SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "80",
                   "SOLVER.BASE_LR", "1e-3", "TEST.EVAL_PERIOD", "80", "SOLVER.LOG_PERIOD", "1")
    summary = train(cfg)
    rows = _loss_rows(tmp_path / "out")
    assert [r["iteration"] for r in rows] == list(range(80))
    first = np.mean([r["total_loss"] for r in rows[:3]])
    last = np.mean([r["total_loss"] for r in rows[-3:]])
    print(f"overfit: total_loss {first:.2f} -> {last:.2f}; eval {summary['eval']}")
    assert last < 0.5 * first
    # all-glass prediction: per-image IoU = glass fraction of the image
    fractions = []
    for p in sorted((data / "annotations_zero_one" / "validation").glob("*.png")):
        lbl = np.array(Image.open(p))
        fractions.append((lbl == 1).mean())
    baseline = float(np.mean(fractions))
    # measured on CPU: IoU 0.965 after 80 iterations (all-glass baseline ~0.25)
    assert summary["eval"]["IoU"] >= 0.9 and summary["eval"]["IoU"] > baseline + 0.3, (summary["eval"], baseline)
    # the run left its logs and the loss curve
    out = tmp_path / "out"
    assert (out / "metrics.csv").read_text().startswith("iteration,")
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert (out / "model_best.pth").is_file() and (out / "config.yaml").is_file()
    assert any("eval/IoU" in r for r in read_metrics(out / "metrics.jsonl"))


# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resume_runs(tmp_path_factory):
    """Run A: 4 iterations straight. Run B: the same, killed after iteration 3 of 4 (checkpoint at 2), then
    resumed with resume=True (and a DataLoader worker, to show the data do not depend on workers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: the per-test one-thread fixture is not active here
    root = tmp_path_factory.mktemp("resume")
    data = make_dataset(root / "data", n=3, size=64)
    common = ("SOLVER.MAX_ITER", "4", "INPUT.MIN_SIZE_TRAIN", "(64, 96)", "INPUT.COLOR_AUG_SSD", "True")
    a = tiny_cfg(root / "a", data, *common, "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.CHECKPOINT_KEEP_LAST", "2")
    train(a)
    b = tiny_cfg(root / "b", data, *common, "SOLVER.CHECKPOINT_PERIOD", "2")
    train(b, stop_at=3)
    killed = {"files": sorted(p.name for p in (root / "b").iterdir()),
              "rows": [r["iteration"] for r in _loss_rows(root / "b")]}
    b.merge_from_list(["DATALOADER.NUM_WORKERS", "1"])
    train(b, resume=True)
    torch.set_num_threads(threads)
    return root, a, b, killed


def test_resume_after_a_kill_gives_identical_weights_and_log(resume_runs):
    root, _, _, killed = resume_runs
    assert "model_final.pth" not in killed["files"] and "model_0000001.pth" in killed["files"]
    assert killed["rows"] == [0, 1, 2]  # logged past the checkpoint, then "killed"
    wa, wb = _weights(root / "a" / "model_final.pth"), _weights(root / "b" / "model_final.pth")
    assert wa.keys() == wb.keys()
    diff = max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa if wa[k].is_floating_point())
    assert diff == 0.0
    ra, rb = _loss_rows(root / "a"), _loss_rows(root / "b")
    assert [r["iteration"] for r in rb] == [0, 1, 2, 3]  # the killed run's row 2 was replaced, not duplicated
    assert ra == rb
    sa, sb = load_training_state(root / "a" / "model_final.pth"), load_training_state(root / "b" / "model_final.pth")
    assert sa["trainer"]["seed"] == sb["trainer"]["seed"] == 7
    for ka, kb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values()):
        assert torch.equal(ka["exp_avg_sq"], kb["exp_avg_sq"])


def test_checkpoint_files_names_format_and_keep_last(resume_runs):
    root, a, _, _ = resume_runs
    out = root / "a"
    # keep-last-2 of the periodic files (iterations 0, 1, 2; 3 is the final one)
    assert sorted(p.name for p in out.glob("model_0*.pth")) == ["model_0000001.pth", "model_0000002.pth"]
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert Checkpointer(out).last_checkpoint() == out / "model_final.pth"
    assert not [p for p in out.iterdir() if ".tmp" in p.name]  # atomic writes leave no temporaries
    state = load_training_state(out / "model_final.pth")
    assert state["iteration"] == 3 and {"optimizer", "scheduler", "trainer"} <= set(state)
    model = gemseg.load_model(a, weights=out / "model_final.pth")  # strict load
    assert set(state["model"]) == set(official_state_dict(model))
    assert state["model"]["criterion.empty_weight"].tolist() == pytest.approx([1.0, 1.0, 0.1])
    for k, v in model.state_dict().items():
        assert torch.equal(v, state["model"][k]), k
    # the periodic checkpoint also reads as an official-format GEM checkpoint
    assert read_checkpoint(out / "model_0000002.pth").kind == "gem"


def test_checkpoint_write_is_atomic_and_refuses_nan(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    ck = Checkpointer(tmp_path)
    ck.save("model_0000000.pth", model, {"iteration": 0})
    before = (tmp_path / "model_0000000.pth").read_bytes()

    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        ck.save("model_0000000.pth", model, {"iteration": 1})
    assert (tmp_path / "model_0000000.pth").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    monkeypatch.undo()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN"):
        ck.save("model_0000001.pth", model, {"iteration": 1})
    assert not (tmp_path / "model_0000001.pth").exists()


# ---------------------------------------------------------------------------------------------------------------
def _position_independent_rand(*size, generator=None, device=None, dtype=None, **kw):
    """``torch.rand`` stand-in whose values depend only on the last two dimensions' indices: every image /
    mask draws the same matcher and importance-sampling points whichever micro-batch it is in."""
    if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
        size = tuple(size[0])
    g = torch.Generator().manual_seed(1234)
    tail = tuple(size[-2:]) if len(size) >= 2 else tuple(size[-1:]) if size else ()
    base = _REAL_RAND(tail, generator=g) if tail else torch.tensor(0.5)
    if len(size) < 2:
        base = torch.full(tuple(size), 0.5)
    out = base.expand(tuple(size)).clone()
    return out.to(device=device or "cpu", dtype=dtype or torch.float32)


_REAL_RAND = torch.rand


def test_gradient_accumulation_equals_the_large_batch(tmp_path, monkeypatch):
    """One SGD step (no momentum history, no clipping): the update is -lr·grad, so equal weights after the step
    mean equal gradients. 4 images as 1 × 4 vs 2 micro-batches × 2 vs 4 × 1. One image repeated (BatchNorm's
    batch statistics are then batch-size independent), DN off, position-independent matcher points."""
    monkeypatch.setattr(torch, "rand", _position_independent_rand)
    data = make_dataset(tmp_path / "data", n=1, size=64)
    common = ("SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "1", "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR",
              "0.5", "SOLVER.CLIP_GRADIENTS.ENABLED", "False", "INPUT.RANDOM_FLIP", "none",
              "MODEL.MaskDINO.DN_NUM", "0", "MODEL.BACKBONE.DROP_PATH_RATE", "0.0")
    finals = {}
    for k in (1, 2, 4):
        cfg = tiny_cfg(tmp_path / f"k{k}", data, *common, "SOLVER.GRAD_ACCUM_STEPS", str(k))
        train(cfg)
        finals[k] = _weights(tmp_path / f"k{k}" / "model_final.pth")
    seed_everything(7)
    model = build_model(cfg)
    init = model.state_dict()
    # parameters only: BatchNorm *running* statistics legitimately differ (one momentum update per micro-batch)
    d1 = {n: finals[1][n] - init[n] for n, _ in model.named_parameters()}
    scale = max(v.abs().max().item() for v in d1.values())
    assert scale > 1e-3  # the step did move the weights
    for k in (2, 4):
        err = max((finals[k][n] - init[n] - d1[n]).abs().max().item() for n in d1)
        assert err <= 1e-4 * scale, (k, err, scale)


def test_non_finite_losses_skip_steps_then_stop_without_a_checkpoint(tmp_path, monkeypatch):
    data = make_dataset(tmp_path / "data", n=2, size=64)
    real_total = train_loop.weighted_total

    def nan_total(losses, weights):
        return real_total(losses, weights) * float("nan")

    monkeypatch.setattr(train_loop, "weighted_total", nan_total)
    cfg = tiny_cfg(tmp_path / "out", data, "SOLVER.MAX_ITER", "5", "SOLVER.NONFINITE_PATIENCE", "2",
                   "SOLVER.CHECKPOINT_PERIOD", "1")
    with pytest.raises(NonFiniteLossError, match="2 consecutive"):
        train(cfg)
    out = tmp_path / "out"
    # iteration 0 was skipped, so its checkpoint holds the untouched initial parameters; none after the stop
    assert sorted(p.name for p in out.glob("*.pth")) == ["model_0000000.pth"]
    seed_everything(7)
    model = build_model(cfg)
    saved = _weights(out / "model_0000000.pth")
    assert all(torch.equal(saved[n], p.detach()) for n, p in model.named_parameters())
    rows = read_metrics(out / "metrics.jsonl")
    assert rows[0]["skipped_steps"] == 1 and np.isnan(rows[0]["total_loss"])


def test_resume_refuses_a_model_only_checkpoint(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    data = make_dataset(tmp_path / "data", n=1, size=64)
    cfg = tiny_cfg(out, data)
    from gemseg.modeling.checkpoint import save_checkpoint

    save_checkpoint(build_model(cfg), out / "model_final.pth")
    (out / "last_checkpoint").write_text("model_final.pth")
    with pytest.raises(CheckpointError, match="no trainer state"):
        train(cfg, resume=True)


def test_backbone_init_from_model_weights_and_bf16_autocast_on_cpu(tmp_path, caplog, capsys):
    """MODEL.WEIGHTS holding only backbone.* tensors (a converted MobileSAM .pkl has this shape) initialises the
    backbone and leaves the head random, reported in the log — the official run scripts' initialisation; the
    run itself uses bfloat16 autocast on CPU."""
    data = make_dataset(tmp_path / "data", n=2, size=64)
    cfg = tiny_cfg(tmp_path / "out", data, "SOLVER.MAX_ITER", "1", "SOLVER.AMP.ENABLED", "True",
                   "SOLVER.BASE_LR", "0.0")
    torch.manual_seed(123)
    donor = build_model(cfg).state_dict()
    backbone = {k: v for k, v in donor.items() if k.startswith("backbone.")}
    torch.save({"model": backbone}, tmp_path / "backbone.pth")
    cfg.merge_from_list(["MODEL.WEIGHTS", str(tmp_path / "backbone.pth")])
    with caplog.at_level("INFO", logger="gemseg.train"):
        summary = train(cfg)
    assert "initial weights: loaded" in caplog.text and "randomly initialised" in caplog.text
    assert "AMP bfloat16" in capsys.readouterr().err
    final = _weights(tmp_path / "out" / "model_final.pth")
    # LR 0: the parameters are exactly the initialisation
    assert torch.equal(final["backbone.neck.0.weight"], donor["backbone.neck.0.weight"])
    assert not torch.equal(final["sem_seg_head.predictor.class_embed.weight"],
                           donor["sem_seg_head.predictor.class_embed.weight"])
    assert np.isfinite(summary["last_metrics"]["total_loss"])


def test_finetune_starts_from_a_full_gem_checkpoint(resume_runs, tmp_path):
    """MODEL.WEIGHTS = a GEM model_final.pth initialises the whole model (pre-train on S-GSD → fine-tune)."""
    root, a, _, _ = resume_runs
    src = root / "a" / "model_final.pth"
    cfg = a.clone()
    cfg.merge_from_list(["OUTPUT_DIR", str(tmp_path / "ft"), "MODEL.WEIGHTS", str(src), "SOLVER.MAX_ITER", "1",
                         "SOLVER.BASE_LR", "0.0", "SOLVER.CHECKPOINT_KEEP_LAST", "0"])
    train(cfg)
    before, after = _weights(src), _weights(tmp_path / "ft" / "model_final.pth")
    model = build_model(cfg)
    for name, _ in model.named_parameters():
        assert torch.equal(before[name], after[name]), name
    # a fresh run: its own iteration count, not the source's
    assert load_training_state(tmp_path / "ft" / "model_final.pth")["iteration"] == 0


def test_freeze_at_keeps_the_pretrained_encoder_and_trains_the_rest(tmp_path):
    """MODEL.BACKBONE.FREEZE_AT 5 on GEM-Lite: after real steps the EfficientNet encoder is bit-identical to its
    initialisation while the laterals and the head moved; a backbone without the switch is refused."""
    from gemseg.config import get_config
    from gemseg.errors import ConfigError
    from .helpers import tiny_opts

    data = make_dataset(tmp_path / "data", n=2, size=64)
    opts = tiny_opts(64) + ["DATASETS.TRAIN", f"('{data}',)", "DATASETS.TEST", f"('{data}',)", "TEST.EVAL_PERIOD",
                            "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(1000,)",
                            "SOLVER.CHECKPOINT_PERIOD", "1000", "SOLVER.BASE_LR", "1e-3",
                            "SOLVER.CLIP_GRADIENTS.ENABLED", "False", "MODEL.BACKBONE.FREEZE_AT", "5"]
    lite = Path(gemseg.__file__).parent / "configs" / "gem_lite_effnet.yaml"
    cfg = get_config(lite, opts + ["OUTPUT_DIR", str(tmp_path / "out")], freeze=False)
    torch.manual_seed(0)
    init = build_model(cfg).state_dict()
    torch.save({"model": init}, tmp_path / "init.pth")
    cfg.merge_from_list(["MODEL.WEIGHTS", str(tmp_path / "init.pth")])
    train(cfg)
    final = _weights(tmp_path / "out" / "model_final.pth")
    encoder = [k for k in init if k.startswith(("backbone.stem.", "backbone.stages.")) and "running" not in k
               and "num_batches" not in k]
    assert encoder and all(torch.equal(final[k], init[k]) for k in encoder)
    assert not torch.equal(final["backbone.lateral.res2.0.weight"], init["backbone.lateral.res2.0.weight"])

    # resuming the run with another set of trainable parameters is refused, saying why
    cfg.merge_from_list(["MODEL.BACKBONE.FREEZE_AT", "0", "SOLVER.MAX_ITER", "3"])
    with pytest.raises(CheckpointError, match="does not fit this run's trainable parameters"):
        train(cfg, resume=True)

    bad = tiny_cfg(tmp_path / "bad", data, "MODEL.BACKBONE.FREEZE_AT", "2")
    with pytest.raises(ConfigError, match="FREEZE_AT is supported for the EfficientNet-Lite"):
        train(bad)
