from pathlib import Path

import pytest

from gemseg.config import get_config, merge_from_list
from gemseg.config.safe_eval import UnsafeExpression, safe_eval
from gemseg.errors import ConfigError
from tests.conftest import shared_path

OFFICIAL_MIN_SIZES = [int(x * 0.1 * 512) for x in range(5, 21)]


@pytest.mark.parametrize(
    "name, backbone, size, lr, steps, dec_layers, class_weight",
    [
        ("gem_sam_tiny_bs32_iter1w_steplr.yaml", "D2TinyViT", 384, 2e-4, (8438, 9375), 9, 5.0),
        ("gem_sam_tiny_bs32_iter1w_steplr_1024.yaml", "D2TinyViT", 1024, 5e-5, (33759, 37500), 9, 4.0),
        ("gem_sam_base_bs16_iter2w_steplr.yaml", "D2BaseViT", 384, 5e-5, (16875, 18750), 9, 4.0),
        ("gem_sam_base_bs16_160k_steplr_1024.yaml", "D2BaseViT", 1024, 5e-5, (33750, 37500), 9, 4.0),
    ],
)
def test_official_configs_load_unchanged(name, backbone, size, lr, steps, dec_layers, class_weight):
    cfg = get_config(shared_path("fixtures", "official-configs", name))
    assert cfg.MODEL.BACKBONE.NAME == backbone
    assert cfg.INPUT.MIN_SIZE_TEST == size and list(cfg.INPUT.CROP.SIZE) == [size, size]
    assert cfg.SOLVER.BASE_LR == pytest.approx(lr)
    assert tuple(cfg.SOLVER.STEPS) == steps
    assert cfg.MODEL.MaskDINO.DEC_LAYERS == dec_layers
    assert cfg.MODEL.MaskDINO.CLASS_WEIGHT == class_weight
    # the !!python/object/apply:eval tag, evaluated without executing code
    assert list(cfg.INPUT.MIN_SIZE_TRAIN) == OFFICIAL_MIN_SIZES
    assert cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS == 0
    assert cfg.MODEL.MaskDINO.TWO_STAGE is False
    assert cfg.DATASETS.TRAIN == ("ade20k_sem_seg_train",)
    assert cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == pytest.approx(0.01)


def test_base_chain_and_overrides():
    cfg = get_config(shared_path("fixtures", "official-gem-tiny-mini", "gem_tiny_mini.yaml"),
                     ["MODEL.WEIGHTS", "x.pth", "SOLVER.BASE_LR", "1", "INPUT.CROP.SIZE", "(256, 256)"])
    assert cfg.MODEL.MaskDINO.DEC_LAYERS == 3  # leaf
    assert cfg.SOLVER.STEPS == (8438, 9375)  # its base
    assert cfg.MODEL.PIXEL_MEAN == [123.675, 116.28, 103.53]  # base of the base
    assert cfg.MODEL.WEIGHTS == "x.pth"
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert list(cfg.INPUT.CROP.SIZE) == [256, 256]


def test_unknown_key_in_file_and_override(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  BACKBONE:\n    NAMEE: D2TinyViT\n")
    with pytest.raises(ConfigError, match=r"unknown config key MODEL\.BACKBONE\.NAMEE"):
        get_config(bad)
    with pytest.raises(ConfigError, match="unknown config key SOLVER.BASE_LRR"):
        get_config(None, ["SOLVER.BASE_LRR", "1"])
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        get_config(None, ["SOLVER.BASE_LR"])
    with pytest.raises(ConfigError, match="expects int"):
        get_config(None, ["SOLVER.MAX_ITER", "abc"])


def test_hostile_yaml_tag_is_rejected_with_file_and_line(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "hostile.yaml"
    bad.write_text(
        "MODEL:\n"
        "  WEIGHTS: !!python/object/apply:os.system [\"touch " + str(marker) + "\"]\n"
    )
    with pytest.raises(ConfigError) as e:
        get_config(bad)
    assert "hostile.yaml" in str(e.value) and "line 2" in str(e.value)
    assert not marker.exists()
    evil_eval = tmp_path / "evil_eval.yaml"
    evil_eval.write_text("INPUT:\n  MIN_SIZE_TRAIN: !!python/object/apply:eval [\"__import__('os').getcwd()\"]\n")
    with pytest.raises(ConfigError, match=r"evil_eval.yaml, line 2: refusing to evaluate"):
        get_config(evil_eval)


def test_base_cycle_and_missing_base(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("_BASE_: b.yaml\n")
    b.write_text("_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        get_config(a)
    c = tmp_path / "c.yaml"
    c.write_text("_BASE_: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="not found"):
        get_config(c)


def test_safe_eval_subset():
    assert safe_eval("[int(x * 0.1 * 512) for x in range(5, 21)]") == OFFICIAL_MIN_SIZES
    assert safe_eval("[x for x in range(4) if x % 2 == 0]") == [0, 2]
    for bad in ["__import__('os')", "open('f')", "(lambda: 1)()", "[x for x in range(10**9)]", "a.b"]:
        with pytest.raises(UnsafeExpression):
            safe_eval(bad)


def test_dump_roundtrip(tmp_path):
    cfg = get_config(shared_path("fixtures", "official-configs", "gem_sam_tiny_bs32_iter1w_steplr.yaml"))
    p = tmp_path / "dumped.yaml"
    p.write_text(cfg.dump())
    assert get_config(p) == cfg


def test_merge_from_list_keeps_frozen():
    cfg = get_config(None)
    merge_from_list(cfg, ["MODEL.DEVICE", "cuda"])
    assert cfg.MODEL.DEVICE == "cuda" and cfg.is_frozen()


@pytest.mark.parametrize("ours, official", [
    ("gem-tiny", "gem_sam_tiny_bs32_iter1w_steplr.yaml"),
    ("gem-tiny-1024", "gem_sam_tiny_bs32_iter1w_steplr_1024.yaml"),
    ("gem-base", "gem_sam_base_bs16_iter2w_steplr.yaml"),
    ("gem-base-1024", "gem_sam_base_bs16_160k_steplr_1024.yaml"),
])
def test_shipped_configs_equal_the_official_ones(ours, official):
    """Our configs differ from the official ones only in run bookkeeping (output dir, the Tiny MAX_ITER fix)."""
    a = get_config(ours)
    b = get_config(shared_path("fixtures", "official-configs", official))
    diffs = []

    def walk(x, y, prefix=""):
        for k in x:
            if isinstance(x[k], dict):
                walk(x[k], y[k], prefix + k + ".")
            elif x[k] != y[k] and not (isinstance(x[k], (list, tuple)) and list(x[k]) == list(y[k])):
                diffs.append(prefix + k)

    walk(a, b)
    allowed = {"OUTPUT_DIR", "MODEL.WEIGHTS"} | ({"SOLVER.MAX_ITER"} if ours == "gem-tiny" else set())
    assert set(diffs) <= allowed, diffs


def test_unknown_config_name_lists_shipped_ones():
    with pytest.raises(ConfigError, match="gem-base"):
        get_config("gem-huge")
