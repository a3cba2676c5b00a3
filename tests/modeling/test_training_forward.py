"""The model in training mode: denoising queries, deep supervision outputs, and losses that backpropagate."""
import torch

from gemseg.config import get_config
from gemseg.data.transforms import make_targets
from gemseg.losses.criterion import build_criterion, weighted_total
from gemseg.losses.denoising import dn_post_process, prepare_for_dn
from gemseg.modeling.build import build_model

OPTS = ["INPUT.MIN_SIZE_TEST", "128", "MODEL.MaskDINO.DEC_LAYERS", "2", "MODEL.MaskDINO.NUM_OBJECT_QUERIES", "10",
        "MODEL.MaskDINO.DIM_FEEDFORWARD", "64", "MODEL.MaskDINO.DN_NUM", "8", "MODEL.MaskDINO.TRAIN_NUM_POINTS",
        "256"]


def _batch():
    labels = torch.zeros(2, 128, 128, dtype=torch.long)
    labels[0, 20:90, 30:100] = 1
    labels[1, :, 64:] = 1
    labels[1, 120:] = 255
    images = torch.rand(2, 3, 128, 128) * 255
    return images, [make_targets(lbl) for lbl in labels]


def test_train_step_with_denoising_backpropagates_everywhere():
    torch.manual_seed(0)
    cfg = get_config(None, OPTS)
    model = build_model(cfg).train()
    criterion = build_criterion(cfg)
    images, targets = _batch()
    outputs, dn_meta = model(images, targets, prepare_for_dn, dn_post_process)
    assert dn_meta is not None
    assert outputs["pred_logits"].shape == (2, 10, 3)  # DN queries were split off
    assert outputs["pred_masks"].shape == (2, 10, 32, 32)
    assert len(outputs["aux_outputs"]) == 2  # initial prediction + layer 1 (layer 2 is the main output)
    assert outputs["proposal_cls_logits"].shape == (2, 2, 8, 8)
    losses = criterion(outputs, targets, dn_meta)
    assert {"loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou", "loss_proposal", "loss_ce_dn",
            "loss_mask_0", "loss_ce_dn_1"} <= set(losses)
    total = weighted_total(losses, criterion.weight_dict)
    assert torch.isfinite(total)
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == [], no_grad[:5]
    assert model.sem_seg_head.predictor.label_enc.weight.grad.abs().sum() > 0


def test_eval_mode_skips_denoising_and_aux():
    cfg = get_config(None, OPTS)
    model = build_model(cfg).eval()
    images, targets = _batch()
    with torch.no_grad():
        outputs, dn_meta = model(images, targets, prepare_for_dn, dn_post_process)
    assert dn_meta is None and "aux_outputs" not in outputs
    assert outputs["pred_boxes"].shape == (2, 10, 4)
