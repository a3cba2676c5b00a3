"""Pixel decoder: GEM's 0-layer configuration and the general N > 0 deformable encoder."""
import torch
from torch.nn import functional as F

from gemseg.modeling.pixel_decoder import DeformableEncoder, PixelDecoder

CH = {"res2": 32, "res3": 32, "res4": 32, "res5": 32}


def _features(b=2, s=64, ch=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {f"res{i}": torch.randn(b, ch, s // 2 ** i, s // 2 ** i, generator=g) for i in range(2, 6)}


def _randomize(module, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_gem_configuration_is_projection_only():
    dec = PixelDecoder(CH, conv_dim=32, mask_dim=16, num_encoder_layers=0).eval()
    _randomize(dec)
    feats = _features()
    mask_features, ms = dec(feats)
    assert [tuple(f.shape[-2:]) for f in ms] == [(2, 2), (4, 4), (8, 8)]  # res5, res4, res3
    # input_proj[0] ← res5, [1] ← res4, [2] ← res3; mask_features on raw res2
    for idx, name in enumerate(["res5", "res4", "res3"]):
        assert torch.allclose(ms[idx], dec.input_proj[idx](feats[name]))
    assert torch.allclose(mask_features, dec.mask_features(feats["res2"]))
    keys = set(dec.state_dict())
    assert not any(k.startswith("transformer.") for k in keys)  # no level_embed when 0 layers
    assert {"input_proj.0.0.weight", "input_proj.2.1.bias", "mask_features.weight"} <= keys


def test_fpn_adapter_variant():
    dec = PixelDecoder(CH, conv_dim=32, mask_dim=16, num_encoder_layers=0, fpn_adapter=True).eval()
    _randomize(dec)
    feats = _features()
    mask_features, ms = dec(feats)
    lateral = F.group_norm(F.conv2d(feats["res2"], dec.adapter_1.weight), 32, dec.adapter_1.norm.weight,
                           dec.adapter_1.norm.bias)
    y = lateral + F.interpolate(ms[-1], size=(16, 16), mode="bilinear", align_corners=False)
    y = F.relu(F.group_norm(F.conv2d(y, dec.layer_1.weight, padding=1), 32, dec.layer_1.norm.weight,
                            dec.layer_1.norm.bias))
    assert torch.allclose(mask_features, dec.mask_features(y), atol=1e-5)
    assert {"adapter_1.weight", "adapter_1.norm.weight", "layer_1.weight", "layer_1.norm.bias"} <= set(
        dec.state_dict())


def test_encoder_reference_points_are_pixel_centres():
    ref = DeformableEncoder.reference_points([(2, 4), (1, 2)], torch.ones(1, 2, 2))
    assert ref.shape == (1, 10, 2, 2)
    assert torch.allclose(ref[0, 0, 0], torch.tensor([0.125, 0.25]))  # (x, y) of pixel (0, 0) on a 2×4 map
    assert torch.allclose(ref[0, 9, 0], torch.tensor([0.75, 0.5]))


def test_deformable_encoder_layers_follow_the_postnorm_formula():
    torch.manual_seed(0)
    dec = PixelDecoder(CH, conv_dim=32, mask_dim=16, num_encoder_layers=2, dim_feedforward=24, n_heads=4,
                       n_points=2).eval()
    _randomize(dec, seed=3)
    assert dec.transformer.level_embed.shape == (3, 32)
    assert "transformer.encoder.layers.1.self_attn.sampling_offsets.weight" in dec.state_dict()
    feats = _features()
    _, ms = dec(feats)

    # recompute by hand: flatten levels (lowest resolution first), add sine pos + level embedding, 2 layers
    srcs = [dec.input_proj[i](feats[n]) for i, n in enumerate(["res5", "res4", "res3"])]
    shapes = [tuple(s.shape[-2:]) for s in srcs]
    x = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
    pos = torch.cat([dec.pe_layer(s).flatten(2).transpose(1, 2) + dec.transformer.level_embed[i]
                     for i, s in enumerate(srcs)], 1)
    ref = DeformableEncoder.reference_points(shapes, torch.ones(2, 3, 2))
    for layer in dec.transformer.encoder.layers:
        a = layer.self_attn(x + pos, ref, x, shapes)
        x = layer.norm1(x + a)
        x = layer.norm2(x + layer.linear2(F.relu(layer.linear1(x))))
    expected = [o.transpose(1, 2).reshape(2, 32, h, w) for o, (h, w) in zip(x.split([h * w for h, w in shapes], 1),
                                                                            shapes)]
    for got, exp in zip(ms, expected):
        assert torch.allclose(got, exp, atol=1e-5)
    # the encoder really mixes levels: outputs differ from the plain projections
    assert not torch.allclose(ms[0], srcs[0], atol=1e-3)


def test_extra_levels_are_lower_resolution():
    dec = PixelDecoder(CH, conv_dim=32, mask_dim=16, num_encoder_layers=1, total_num_feature_levels=4,
                       dim_feedforward=16, n_heads=4, n_points=1).eval()
    _, ms = dec(_features(s=128))
    assert [tuple(f.shape[-2:]) for f in ms] == [(2, 2), (4, 4), (8, 8), (16, 16)]
