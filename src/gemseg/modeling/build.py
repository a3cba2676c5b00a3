"""Explicit constructors: config → GEM model, and ``load_model`` (config + weights → ready model)."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Optional, Sequence, Union

import torch
from yacs.config import CfgNode

from gemseg.config import get_config
from gemseg.errors import ConfigError
from gemseg.modeling.gem import GEM, SemSegHead
from gemseg.modeling.mask_dino_decoder import MaskDINODecoder
from gemseg.modeling.pixel_decoder import PixelDecoder

if TYPE_CHECKING:
    from gemseg.modeling.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
PYRAMID_FEATURES = ("res2", "res3", "res4", "res5")


def model_input_size(cfg: CfgNode) -> int:
    """The square network input size: ``MODEL.BACKBONE.IMG_SIZE`` or, if 0, ``INPUT.MIN_SIZE_TEST``."""
    size = int(cfg.MODEL.BACKBONE.IMG_SIZE) or int(cfg.INPUT.MIN_SIZE_TEST)
    if size <= 0 or size % 32:
        raise ConfigError(f"the model input size must be a positive multiple of 32, got {size}")
    return size


def input_size_overrides(size: int) -> list:
    """``KEY VALUE`` overrides that set the square network input size to ``size`` (checked when the model is built)."""
    return ["MODEL.BACKBONE.IMG_SIZE", str(int(size)), "INPUT.MIN_SIZE_TEST", str(int(size))]


def build_backbone_from_config(cfg: CfgNode) -> torch.nn.Module:
    from gemseg.modeling.backbones import build_backbone

    name = cfg.MODEL.BACKBONE.NAME
    kwargs = {}
    if cfg.MODEL.BACKBONE.DROP_PATH_RATE >= 0:
        kwargs["drop_path_rate"] = float(cfg.MODEL.BACKBONE.DROP_PATH_RATE)
    try:
        return build_backbone(name, model_input_size(cfg), **kwargs)
    except ValueError as e:
        raise ConfigError(f"MODEL.BACKBONE.NAME: {e}") from None


def build_model(cfg: Union[CfgNode, PathLike], backbone: Optional[torch.nn.Module] = None) -> GEM:
    """Build an (untrained) GEM model from a config node or config file.

    ``backbone`` may be given to use a custom module with the same interface (dict of res2..res5, 256 channels).
    """
    if not isinstance(cfg, CfgNode):
        cfg = get_config(cfg)
    if cfg.MODEL.META_ARCHITECTURE != "MaskDINO":
        raise ConfigError(f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r} is not supported (MaskDINO)")
    head_cfg, md = cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.MaskDINO
    if md.TWO_STAGE:
        raise ConfigError("MODEL.MaskDINO.TWO_STAGE True is not part of GEM (the GEM configs set it False)")
    if backbone is None:
        backbone = build_backbone_from_config(cfg)
    channels = int(getattr(backbone, "out_channels", 256))
    pixel_decoder = PixelDecoder(
        in_channels={k: channels for k in PYRAMID_FEATURES},
        conv_dim=head_cfg.CONVS_DIM,
        mask_dim=head_cfg.MASK_DIM,
        num_encoder_layers=head_cfg.TRANSFORMER_ENC_LAYERS,
        dim_feedforward=head_cfg.DIM_FEEDFORWARD,
        transformer_in_features=head_cfg.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES,
        mask_in_feature=head_cfg.IN_FEATURES[0],
        total_num_feature_levels=head_cfg.TOTAL_NUM_FEATURE_LEVELS,
        n_heads=head_cfg.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS,
        n_points=head_cfg.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS,
        fpn_adapter=head_cfg.FPN_ADAPTER,
    )
    predictor = MaskDINODecoder(
        num_classes=head_cfg.NUM_CLASSES,
        hidden_dim=md.HIDDEN_DIM,
        num_queries=md.NUM_OBJECT_QUERIES,
        nheads=md.NHEADS,
        dim_feedforward=md.DIM_FEEDFORWARD,
        dec_layers=md.DEC_LAYERS,
        mask_dim=head_cfg.MASK_DIM,
        num_feature_levels=head_cfg.TOTAL_NUM_FEATURE_LEVELS,
        # the official DINO decoder layers take no dropout from the config (always 0.0)
        dropout=0.0,
        query_proposal=md.QUERY_PROPOSAL,
        dn=md.DN,
        dn_num=md.DN_NUM,
        noise_scale=md.DN_NOISE_SCALE,
        initial_pred=md.INITIAL_PRED,
    )
    model = GEM(backbone, SemSegHead(pixel_decoder, predictor), model_input_size(cfg),
                cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD, head_cfg.NUM_CLASSES)
    model.cfg = cfg
    model.variant = "head" if md.QUERY_PROPOSAL and not head_cfg.FPN_ADAPTER else "legacy"
    return model


def load_model(
    config: Union[CfgNode, PathLike, None],
    weights: Union[PathLike, "Checkpoint", None] = None,
    device: Union[str, torch.device] = "cpu",
    opts: Optional[Sequence[str]] = None,
    strict: bool = True,
) -> GEM:
    """Build GEM from ``config`` and load ``weights`` (or ``MODEL.WEIGHTS``), in eval mode on ``device``.

    ``weights`` may be an official detectron2 ``.pth``/``.pkl``, a SAM/MobileSAM checkpoint (backbone only: the
    head stays randomly initialised, which is reported), or a gemseg ``.safetensors`` (which also carries its
    config, so ``config`` may then be None), or a :class:`~gemseg.modeling.checkpoint.Checkpoint` already read
    from one of them. The older official model variant is recognised from the keys.
    Without any weights the model is randomly initialised and a warning is logged.
    """
    from gemseg.modeling.checkpoint import Checkpoint, apply_checkpoint, config_from_checkpoint, read_checkpoint

    ckpt = None
    if weights is not None:
        ckpt = weights if isinstance(weights, Checkpoint) else read_checkpoint(weights)
    if config is None:
        if ckpt is None or config_from_checkpoint(ckpt) is None:
            raise ConfigError("no config given, and the weights carry none: pass a config file")
        cfg = config_from_checkpoint(ckpt)
    elif isinstance(config, CfgNode):
        cfg = config.clone()
    else:
        cfg = get_config(config, freeze=False)
    cfg.defrost()
    if opts:
        from gemseg.config import merge_from_list

        merge_from_list(cfg, opts)
    if ckpt is None and cfg.MODEL.WEIGHTS and not str(cfg.MODEL.WEIGHTS).startswith("detectron2://"):
        ckpt = read_checkpoint(cfg.MODEL.WEIGHTS)
    if ckpt is not None:
        ckpt.configure(cfg)
    cfg.freeze()
    model = build_model(cfg)
    if ckpt is None:
        logger.warning("no weights given: GEM is randomly initialised and its masks are meaningless")
    else:
        report = apply_checkpoint(model, ckpt, strict=strict, pos_embed_policy=cfg.MODEL.BACKBONE.POS_EMBED_POLICY)
        model.load_report = report
        logger.info("%s", report)
    return model.to(device).eval()
