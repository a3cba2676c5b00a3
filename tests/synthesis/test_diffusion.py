"""The diffusion engine with a tiny randomly initialised ControlNet + Stable Diffusion pipeline (no downloads).

Skipped (with the reason) when the optional extra ``diffusers``/``transformers`` is not installed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers", reason="diffusers not installed: pip install 'gemseg[diffusion]' to run this test")
pytest.importorskip("transformers", reason="transformers not installed: pip install 'gemseg[diffusion]'")

from gemseg.synthesis import SynthError, WriteOptions, generate_dataset  # noqa: E402
from gemseg.synthesis.diffusion import DiffusionEngine, DiffusionOptions, control_image, find_pairs  # noqa: E402


def _tokenizer_files(folder: Path) -> None:
    """A minimal CLIP BPE vocabulary: single characters (with and without end-of-word) and the special tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789,.")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def build_tiny_models(root: Path) -> Path:
    """Save a tiny SD + ControlNet pipeline and a tiny CLIP model in ``root`` (the engine's --model-dir layout)."""
    import torch
    from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline,
                           UNet2DConditionModel)
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTextConfig,
                              CLIPTextModel, CLIPTokenizer)

    torch.manual_seed(0)
    tok_dir = root / "_tok"
    _tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
    text_cfg = dict(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
                    num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=8, attention_head_dim=4)
    controlnet = ControlNetModel(block_out_channels=(32, 64), layers_per_block=1, in_channels=4,
                                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), cross_attention_dim=32,
                                 conditioning_embedding_out_channels=(8, 16), norm_num_groups=8,
                                 attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=8)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    pipe = StableDiffusionControlNetPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                             controlnet=controlnet, scheduler=scheduler, safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)
    model_dir = root / "sd"
    pipe.save_pretrained(model_dir)
    clip_cfg = CLIPConfig(text_config=text_cfg,
                          vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                             num_hidden_layers=2, image_size=32, patch_size=8),
                          projection_dim=16)
    CLIPModel(clip_cfg).save_pretrained(model_dir / "clip")
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                     crop_size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(model_dir / "clip")
    return model_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_sd")
    model_dir = build_tiny_models(root)
    src = root / "src"
    rng = np.random.default_rng(0)
    for split in ("training",):
        (src / "images" / split).mkdir(parents=True)
        (src / "annotations_zero_one" / split).mkdir(parents=True)
        for i in range(2):
            img = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
            mask = np.zeros((40, 56), np.uint8)
            mask[8:30, 10 + 10 * i:40] = 1
            Image.fromarray(img).save(src / "images" / split / f"s{i}.jpg")
            Image.fromarray(mask).save(src / "annotations_zero_one" / split / f"s{i}.png")
    return model_dir, src


def options(model_dir, src, **kw):
    base = dict(model_dir=str(model_dir), source_dataset=str(src), width=64, height=48, steps=2, guidance=1.5,
                device="cpu")
    base.update(kw)
    return DiffusionOptions(**base)


def test_control_images_and_pairs(tiny):
    _, src = tiny
    pairs = find_pairs(src)
    assert [p[0].name for p in pairs] == ["s0.jpg", "s1.jpg"]
    labels = np.zeros((4, 5), np.uint8)
    labels[1:3, 1:4] = 1
    seg = control_image(np.zeros((4, 5, 3), np.uint8), labels, "segmentation")
    assert (seg[labels == 1] == 230).all() and (seg[labels == 0] == 120).all()
    edges = control_image(np.repeat((labels * 255)[..., None], 3, 2), labels, "canny")
    assert edges.shape == (4, 5, 3) and edges.max() == 255


def test_engine_keeps_source_masks_and_is_deterministic(tiny, tmp_path):
    model_dir, src = tiny
    eng = DiffusionEngine(options(model_dir, src, clip_threshold=-1.0))  # random CLIP: accept everything
    opts = WriteOptions(output=tmp_path / "a", num_images=3, seed=5, progress=False)
    summary = generate_dataset(("diffusion", eng.opt), opts, eng.opt.to_json(), (64, 48), engine=eng)
    assert summary["generated"] == 3
    recs = [json.loads(line) for line in (tmp_path / "a" / "manifest.jsonl").read_text().splitlines()]
    for r in recs:
        mask = np.asarray(Image.open(tmp_path / "a" / r["mask"]))
        img = np.asarray(Image.open(tmp_path / "a" / r["image"]))
        assert img.shape == (48, 64, 3) and mask.shape == (48, 64)
        src_mask = np.asarray(Image.open(r["params"]["source_mask"]).resize((64, 48), Image.NEAREST))
        np.testing.assert_array_equal(mask, src_mask)  # the source mask is kept unchanged
        assert r["params"]["clip_score"] is not None and r["params"]["prompt"]
    # image 2 reuses source pair 0 (variant 1) with another seed
    assert recs[2]["params"]["source_image"] == recs[0]["params"]["source_image"]
    assert recs[2]["params"]["variant"] == 1
    # same seed, same index -> the same bytes (a second engine instance, as a resumed run would build)
    again = DiffusionEngine(options(model_dir, src, clip_threshold=-1.0))
    opts_b = WriteOptions(output=tmp_path / "b", num_images=3, seed=5, progress=False, skip_existing=True)
    (tmp_path / "b").mkdir()
    for r in recs[:2]:  # the first two "already exist": only image 2 is generated again
        for key in ("image", "mask"):
            (tmp_path / "b" / r[key]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "b" / r[key]).write_bytes((tmp_path / "a" / r[key]).read_bytes())
    (tmp_path / "b" / "manifest.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in recs[:2]))
    summary = generate_dataset(("diffusion", again.opt), opts_b, again.opt.to_json(), (64, 48), engine=again)
    assert summary["generated"] == 1 and summary["skipped"] == 2
    assert (tmp_path / "a" / "manifest.jsonl").read_bytes() == (tmp_path / "b" / "manifest.jsonl").read_bytes()
    for r in recs:
        assert (tmp_path / "a" / r["image"]).read_bytes() == (tmp_path / "b" / r["image"]).read_bytes()


def test_clip_filter_rejects_and_can_be_disabled(tiny, tmp_path):
    model_dir, src = tiny
    eng = DiffusionEngine(options(model_dir, src, clip_threshold=100.0, max_tries=2))  # nothing scores > 100
    assert eng.render(1, index=0) is None
    opts = WriteOptions(output=tmp_path / "r", num_images=1, seed=0, progress=False)
    summary = generate_dataset(("diffusion", eng.opt), opts, eng.opt.to_json(), (64, 48), engine=eng)
    assert summary["generated"] == 0 and summary["rejected"] == 1
    assert not list((tmp_path / "r").rglob("*.jpg")) and (tmp_path / "r" / "manifest.jsonl").read_text() == ""
    free = DiffusionEngine(options(model_dir, src, clip_filter=False, clip_dir=str(tmp_path / "nowhere")))
    out = free.render(1, index=1)
    assert out is not None and out[2]["clip_score"] is None


def test_missing_weights_are_user_errors(tiny, tmp_path):
    model_dir, src = tiny
    with pytest.raises(SynthError, match="model_index.json"):
        DiffusionEngine(options(tmp_path, src))
    with pytest.raises(SynthError, match="CLIP model"):
        DiffusionEngine(options(model_dir, src, clip_dir=str(tmp_path / "noclip")))
    with pytest.raises(SynthError, match="no image/mask pairs"):
        DiffusionEngine(options(model_dir, tmp_path))


def test_cli_diffusion_end_to_end(tiny, tmp_path):
    from gemseg.cli.main import main

    model_dir, src = tiny
    out = tmp_path / "cli"
    rc = main(["synth", "--engine", "diffusion", "--model-dir", str(model_dir), "--source-dataset", str(src),
               "-n", "2", "-o", str(out), "--size", "64x48", "--steps", "2", "--no-clip-filter", "--device", "cpu",
               "--control", "segmentation", "-q"])
    assert rc == 0
    assert len(list((out / "images/training").glob("*.jpg"))) == 2
    assert len(list((out / "annotations_zero_one/training").glob("*.png"))) == 2
