"""GEM training, top to bottom: build → data → optimizer/scheduler → loop → final checkpoint.

This is the official recipe (``docs/official-gem.md`` §1, §3, §4.3; ``docs/training.md``) in one function,
:func:`train`, that runs in every process of a job (one process, ``--num-gpus N`` workers, or torchrun ranks).
One iteration = one optimizer step over ``SOLVER.IMS_PER_BATCH`` images, split into ``GRAD_ACCUM_STEPS``
micro-batches on each of the W processes:

    for each micro-batch: forward (autocast) → criterion → weighted total / K → backward (DDP syncs on the last)
    all ranks agree whether the loss was finite → clip the whole model's gradient norm (0.01) → AdamW step
    → LR schedule step → log (rank 0) → evaluate / checkpoint every EVAL_PERIOD / CHECKPOINT_PERIOD

Exact resume: the checkpoint holds model, optimizer, scheduler, AMP scaler, the iteration, every rank's
python/numpy/torch RNG states and the run seed; the data stream is a pure function of (seed, position)
(:mod:`gemseg.engine.data`), so ``--resume`` continues bit-for-bit where the last checkpoint was written.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import random
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist

from gemseg.data.transforms import build_train_transform
from gemseg.engine import distributed as du
from gemseg.engine.checkpointer import (Checkpointer, capture_rng_state, load_training_state, periodic_name,
                                        restore_rng_state)
from gemseg.engine.data import build_train_loader, per_rank_batch_size, resolve_train_dataset, to_model_inputs
from gemseg.engine.logging import TrainLogger
from gemseg.engine.optim import build_lr_scheduler, build_optimizer, clip_gradients
from gemseg.errors import CheckpointError, ConfigError, GemsegError
from gemseg.io.atomic import atomic_write_bytes
from gemseg.losses.criterion import build_criterion, weighted_total
from gemseg.losses.denoising import dn_post_process, prepare_for_dn
from gemseg.modeling.build import build_model, model_input_size
from gemseg.modeling.checkpoint import Checkpoint, apply_checkpoint, read_checkpoint

logger = logging.getLogger("gemseg.train")

# loss terms shown on the progress line (the final decoder layer's); every term goes to metrics.jsonl
PROGRESS_TERMS = ("loss_ce", "loss_mask", "loss_dice", "loss_proposal")


class NonFiniteLossError(GemsegError):
    """Too many consecutive optimizer steps had a non-finite loss or gradient."""


# ---------------------------------------------------------------------------------------------------------------
# small helpers (devices, precision, seeding)
def resolve_train_device(name: str, info: du.DistInfo) -> torch.device:
    """``MODEL.DEVICE`` (cpu | cuda | cuda:N | mps | auto) → the device of this rank."""
    from gemseg.inference.devices import resolve_device

    device = resolve_device(name or "auto")
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)  # one GPU per rank
    return device


def amp_settings(cfg: Any, device: torch.device) -> tuple[Optional[torch.dtype], bool]:
    """``(autocast dtype or None, use a GradScaler)`` from ``SOLVER.AMP``.

    Default dtype: float16 on CUDA (with loss scaling, as detectron2's AMP trainer), bfloat16 on CPU/MPS (no
    scaling needed: bfloat16 has float32's exponent range).
    """
    if not cfg.SOLVER.AMP.ENABLED:
        return None, False
    name = str(cfg.SOLVER.AMP.DTYPE or ("float16" if device.type == "cuda" else "bfloat16")).lower()
    dtypes = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if name not in dtypes:
        raise ConfigError(f"SOLVER.AMP.DTYPE must be float16 or bfloat16, got {cfg.SOLVER.AMP.DTYPE!r}")
    dtype = dtypes[name]
    if dtype == torch.float16 and device.type == "cpu":
        raise ConfigError("SOLVER.AMP.DTYPE float16 is not supported on CPU; use bfloat16")
    return dtype, dtype == torch.float16 and device.type == "cuda"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def choose_seed(cfg: Any) -> int:
    """``SEED`` when >= 0, else a fresh random seed (the official ``SEED -1``); rank 0's choice is broadcast."""
    seed = int(cfg.SEED)
    if seed < 0:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    return int(du.broadcast_object(seed))


def read_initial_weights(cfg: Any) -> Optional[Checkpoint]:
    """Read ``MODEL.WEIGHTS`` — a file or a gemseg zoo name — (None when empty or a detectron2 model-zoo URL,
    with a warning).

    A GEM checkpoint of the older official variant (learned ``query_feat``, FPN adapter) sets the config's variant
    flags, so that the model is built to match it (as :func:`gemseg.load_model` does).
    """
    weights = str(cfg.MODEL.WEIGHTS or "")
    if not weights:
        logger.warning("MODEL.WEIGHTS is empty: training GEM from random initialisation")
        return None
    if weights.startswith("detectron2://"):
        # the base yaml's torchvision R-50 default; the official scripts always override it
        logger.warning("MODEL.WEIGHTS %s is a detectron2 model-zoo URL (not a GEM/SAM backbone); ignored — "
                       "pass mobile_sam.pkl / sam_vit_b_01ec64_wopos.pkl or a GEM checkpoint", weights)
        return None
    from gemseg.zoo import resolve_model

    # a file, or a zoo name (mobile-sam, sam-vit-b, gem-tiny-gsds, ...) fetched into the Hugging Face cache
    ckpt = read_checkpoint(resolve_model(weights=weights, for_training=True).weights)
    ckpt.configure(cfg)
    return ckpt


def load_initial_weights(model: torch.nn.Module, ckpt: Checkpoint, cfg: Any) -> str:
    """Initialise as the official run scripts do: MobileSAM / SAM-ViT-B (``.pkl``/``.pt``/``.pth``) → the backbone,
    the head stays random (listed in the report); a GEM checkpoint → the whole model (fine-tuning). Strict: a
    backbone of the wrong kind is an error, not a silent partial load. Returns the load report text."""
    report = apply_checkpoint(model, ckpt, strict=True, pos_embed_policy=cfg.MODEL.BACKBONE.POS_EMBED_POLICY)
    return str(report)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _gather_rng_states(info: du.DistInfo) -> List[Dict[str, Any]]:
    """Every rank's RNG state (a collective under DDP), so each rank resumes with its own."""
    state = capture_rng_state()
    if not info.enabled:
        return [state]
    states: List[Any] = [None] * info.world_size
    dist.all_gather_object(states, state)
    return states


def _finite_model(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------------
def train(cfg: Any, resume: bool = False, stop_at: Optional[int] = None) -> Dict[str, Any]:
    """Train GEM as ``cfg`` says. Call in every process of the job (see :mod:`gemseg.engine.distributed`).

    Args:
        cfg: a full config (``gemseg.config.get_config``).
        resume: continue from ``OUTPUT_DIR/last_checkpoint`` when it exists (else start from ``MODEL.WEIGHTS``),
            like detectron2's ``resume_or_load``.
        stop_at: stop after this many completed iterations *without* writing a checkpoint, exactly as if the
            process had been killed there (used to test resuming). None: run to ``SOLVER.MAX_ITER``.
    Returns:
        rank-local summary: ``{"iteration", "last_metrics", "eval", "output_dir", "final_checkpoint", "seed"}``.
    """
    cfg = cfg.clone()
    cfg.defrost()
    # ---------------------------------------------------------------- processes, device, output folder
    from gemseg.inference.devices import resolve_device

    # NCCL for CUDA (also when MODEL.DEVICE is "auto" on a GPU machine), gloo otherwise
    info = du.init_from_env(resolve_device(str(cfg.MODEL.DEVICE) or "auto").type)
    device = resolve_train_device(str(cfg.MODEL.DEVICE), info)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
    out_dir = Path(cfg.OUTPUT_DIR)
    checkpointer = Checkpointer(out_dir, keep_last=int(cfg.SOLVER.CHECKPOINT_KEEP_LAST))
    max_iter = int(cfg.SOLVER.MAX_ITER)
    accum = int(cfg.SOLVER.GRAD_ACCUM_STEPS)
    ims_per_batch = int(cfg.SOLVER.IMS_PER_BATCH)
    batch_per_rank = per_rank_batch_size(ims_per_batch, accum, info.world_size)

    # ---------------------------------------------------------------- resume point and seed
    state: Optional[Dict[str, Any]] = None
    resume_path = checkpointer.last_checkpoint() if resume else None
    if resume_path is not None:
        state = load_training_state(resume_path)
        if "trainer" not in state:
            raise CheckpointError(f"{resume_path} has no trainer state (a model-only checkpoint cannot be "
                                  "resumed; start a new run with MODEL.WEIGHTS pointing to it)")
    if not info.is_main:  # rank 0 speaks for the job
        logging.getLogger("gemseg").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")
    elif state is None and checkpointer.last_checkpoint_exists():
        logger.warning("%s already holds a run (last_checkpoint): starting a new one over it; pass --resume to "
                       "continue it instead", out_dir)
    seed = int(state["trainer"]["seed"]) if state is not None else choose_seed(cfg)
    cfg.SEED = seed
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_dir / "config.yaml", cfg.dump().encode())  # as detectron2, with the run's seed
    # each rank draws different matcher points / DN noise (as detectron2 seeds rank r with seed + r)
    seed_everything(seed + info.rank)

    # ---------------------------------------------------------------- model, criterion
    init_ckpt = read_initial_weights(cfg) if state is None else None
    model = build_model(cfg)
    if init_ckpt is not None:
        report = load_initial_weights(model, init_ckpt, cfg)
        if info.is_main:
            logger.info("initial weights: %s", report)
    if cfg.SOLVER.SYNC_BN and info.enabled:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    freeze_at = int(cfg.MODEL.BACKBONE.FREEZE_AT)
    if freeze_at:
        if not hasattr(model.backbone, "freeze_stages"):
            raise ConfigError(f"MODEL.BACKBONE.FREEZE_AT is supported for the EfficientNet-Lite backbones only, "
                              f"not {cfg.MODEL.BACKBONE.NAME}")
        try:
            frozen = model.backbone.freeze_stages(freeze_at)
        except ValueError as e:
            raise ConfigError(f"MODEL.BACKBONE.FREEZE_AT: {e}") from None
        if info.is_main:
            logger.info("MODEL.BACKBONE.FREEZE_AT %d: %d backbone tensors frozen", freeze_at, len(frozen))
    model.to(device).train()
    criterion = build_criterion(cfg).to(device)
    weight_dict = criterion.weight_dict

    # ---------------------------------------------------------------- data
    size = model_input_size(cfg)
    pad = int(cfg.INPUT.SIZE_DIVISIBILITY)
    if pad != size:
        raise ConfigError(f"INPUT.SIZE_DIVISIBILITY ({pad}) must equal the model input size ({size}): training "
                          "images are padded to exactly SIZE_DIVISIBILITY² (official mapper)")
    queries = int(cfg.MODEL.MaskDINO.NUM_OBJECT_QUERIES)
    if cfg.MODEL.MaskDINO.QUERY_PROPOSAL and (size // 16) ** 2 < queries:
        raise ConfigError(f"GEM's query proposal picks {queries} queries from the stride-16 map of a {size}² input "
                          f"({(size // 16) ** 2} locations): lower MODEL.MaskDINO.NUM_OBJECT_QUERIES or raise the size")
    train_set = resolve_train_dataset(cfg.DATASETS.TRAIN)
    transform = build_train_transform(cfg)
    eval_set = resolve_eval_dataset(cfg)  # every rank resolves it (cheap) so that all agree when to evaluate

    # ---------------------------------------------------------------- optimizer, schedule, AMP
    optimizer = build_optimizer(model, cfg)
    scheduler = build_lr_scheduler(optimizer, cfg)
    amp_dtype, use_scaler = amp_settings(cfg, device)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    # ---------------------------------------------------------------- restore the training state
    start_iter, best_iou = 0, -math.inf
    if state is not None:
        apply_checkpoint(model, read_checkpoint(resume_path), strict=True)
        try:
            optimizer.load_state_dict(state["optimizer"])
        except ValueError as e:  # torch: parameter groups of another size
            raise CheckpointError(f"{resume_path}: its optimizer state does not fit this run's trainable parameters "
                                  f"({e}); resume with the run's own settings (e.g. MODEL.BACKBONE.FREEZE_AT "
                                  "from its config.yaml)") from None
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and "grad_scaler" in state:
            scaler.load_state_dict(state["grad_scaler"])
        start_iter = int(state["iteration"]) + 1
        best_iou = float(state["trainer"].get("best_iou", -math.inf))
        rngs = state["trainer"]["rng"]
        if len(rngs) == info.world_size:
            restore_rng_state(rngs[info.rank])
        else:
            logger.warning("the checkpoint was written by %d process(es), this run has %d: RNG streams restart "
                           "(the data order is still exact)", len(rngs), info.world_size)
        if info.is_main:
            logger.info("resumed from %s at iteration %d", resume_path, start_iter)

    net: torch.nn.Module = model
    if info.enabled:
        # buffers (BatchNorm running statistics) stay per rank, as detectron2's broadcast_buffers=False; rank 0's
        # are the ones saved. Newer torch renamed the switch.
        no_buffer_sync = ({"forward_sync_buffers": False}
                          if "forward_sync_buffers" in inspect.signature(
                              torch.nn.parallel.DistributedDataParallel.__init__).parameters
                          else {"broadcast_buffers": False})
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, **no_buffer_sync)

    trainable = [p for p in model.parameters() if p.requires_grad]
    loader = build_train_loader(train_set, transform, seed, ims_per_batch, accum, info.rank, info.world_size,
                                start_iter, max_iter, num_workers=int(cfg.DATALOADER.NUM_WORKERS),
                                pin_memory=device.type == "cuda")
    log = TrainLogger(out_dir, max_iter, start_iter, enabled=info.is_main)
    if info.is_main:
        log.message(f"gem train: {train_set.describe()}; {max_iter - start_iter} iteration(s) from {start_iter}; "
                    f"{info.world_size} process(es) × {accum} micro-batch(es) × {batch_per_rank} image(s) = "
                    f"{ims_per_batch} per step on {device}; seed {seed}"
                    + (f"; AMP {str(amp_dtype).replace('torch.', '')}" if amp_dtype else ""))

    # ---------------------------------------------------------------- the loop
    log_period = max(1, int(cfg.SOLVER.LOG_PERIOD))
    patience = max(1, int(cfg.SOLVER.NONFINITE_PATIENCE))
    eval_period = int(cfg.TEST.EVAL_PERIOD)
    ckpt_period = int(cfg.SOLVER.CHECKPOINT_PERIOD)
    autocast = (torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    bad_steps, skipped = 0, 0
    step_times: deque = deque(maxlen=20)
    last_row: Dict[str, Any] = {}
    last_eval: Optional[Dict[str, float]] = None
    final_path: Optional[Path] = None
    data_iter = iter(loader)
    try:
        for it in range(start_iter, max_iter):
            t_start = time.perf_counter()
            data_time = 0.0
            optimizer.zero_grad(set_to_none=True)
            terms: Dict[str, torch.Tensor] = {}
            total_sum = torch.zeros((), device=device)
            for micro in range(accum):
                t0 = time.perf_counter()
                batch = next(data_iter)
                images, targets = to_model_inputs(batch, device, int(cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE))
                data_time += time.perf_counter() - t0
                # gradients are all-reduced only on the last micro-batch of the step
                sync = (net.no_sync() if info.enabled and micro < accum - 1 else contextlib.nullcontext())
                with sync:
                    with autocast:
                        outputs, dn_meta = net(images, targets, prepare_for_dn, dn_post_process)
                        losses = criterion(outputs, targets, dn_meta)
                    total = weighted_total(losses, weight_dict)
                    # mean over micro-batches: K micro-batches of b == one batch of K·b (up to the normalisers)
                    loss = total / accum
                    if info.enabled:
                        # DDP needs every parameter in every backward; the DN label embedding is unused in a
                        # step without targets. A zero-weighted touch keeps the graph complete (gradient += 0)
                        # and avoids find_unused_parameters' extra graph traversal on every step.
                        loss = loss + 0.0 * sum(p.reshape(-1)[0] for p in trainable)
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                total_sum += total.detach()
                for k, v in losses.items():
                    if k in weight_dict:
                        terms[k] = terms.get(k, 0.0) + v.detach().float() * weight_dict[k] / accum

            # every rank takes the same decision: skip the step if any rank's loss is not finite
            nonfinite = du.all_reduce_max(float(not torch.isfinite(total_sum).item()), device) > 0
            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = clip_gradients(model.parameters(), cfg)
            if not nonfinite and scaler is None and not torch.isfinite(grad_norm):
                nonfinite = True  # gradients are identical on all ranks after DDP's all-reduce
            if nonfinite:
                bad_steps += 1
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.update()
                if info.is_main:
                    logger.warning("iteration %d: non-finite loss or gradient — step skipped (%d in a row)",
                                   it, bad_steps)
                if bad_steps >= patience:
                    raise NonFiniteLossError(
                        f"{bad_steps} consecutive iterations with a non-finite loss/gradient (last: {it}); "
                        "stopping. Lower SOLVER.BASE_LR, disable SOLVER.AMP, or check the data")
            else:
                bad_steps = 0
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
            lr = float(cfg.SOLVER.BASE_LR) * scheduler.multiplier(it)  # the head's LR of this step
            with warnings.catch_warnings():
                # the schedule is per iteration, skipped steps included (torch warns when the first step skipped)
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                scheduler.step()
            step_times.append(time.perf_counter() - t_start)

            # ---------------------------------------------------------- logging (a collective under DDP)
            done = it + 1
            if done % log_period == 0 or done == max_iter or done == start_iter + 1:
                values = {k: float(v) for k, v in terms.items()}
                values["grad_norm"] = float(grad_norm)
                values["total_loss"] = float(total_sum) / accum  # what was optimised (NaN if it was NaN)
                values = du.all_reduce_mean(values, device)
                sec = sum(step_times) / len(step_times)
                row: Dict[str, Any] = {"iteration": it, "total_loss": values.pop("total_loss"), "lr": lr}
                row.update(values)
                row.update(time=step_times[-1], data_time=data_time, eta_seconds=(max_iter - done) * sec)
                if skipped:
                    row["skipped_steps"] = skipped
                log.log(row)
                log.progress(it, row["total_loss"], lr, sec, {k: values[k] for k in PROGRESS_TERMS if k in values})
                last_row = row

            # ---------------------------------------------------------- evaluation, then checkpoints
            is_last = done == max_iter
            improved = False
            if eval_set is not None and eval_period > 0 and (done % eval_period == 0 or is_last):
                if info.is_main:
                    last_eval = _evaluate(model, eval_set, cfg)
                    log.log({"iteration": it, **{f"eval/{k}": v for k, v in last_eval.items()}})
                    log.message(f"eval @ {done}: " + "  ".join(f"{k} {v:.4f}" for k, v in last_eval.items()))
                last_eval = du.broadcast_object(last_eval)
                improved = last_eval["IoU"] > best_iou  # NaN never improves
                if improved:
                    best_iou = float(last_eval["IoU"])
            save_periodic = ckpt_period > 0 and done % ckpt_period == 0 and not is_last
            if save_periodic or is_last or improved:
                if not _finite_model(model):
                    raise NonFiniteLossError(f"the weights hold NaN/Inf at iteration {it}: no checkpoint written")
                rngs = _gather_rng_states(info)
                extra = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "iteration": it,
                    "trainer": {"seed": seed, "rng": rngs, "world_size": info.world_size,
                                "data_position": done * ims_per_batch, "best_iou": best_iou,
                                "skipped_steps": skipped, "config": cfg.dump()},
                }
                if scaler is not None:
                    extra["grad_scaler"] = scaler.state_dict()
                if info.is_main:
                    if improved:
                        checkpointer.save("model_best.pth", model, {"iteration": it, "eval": dict(last_eval)},
                                          update_last=False)
                    if save_periodic:
                        checkpointer.save(periodic_name(it), model, extra)
                    if is_last:
                        final_path = checkpointer.save("model_final.pth", model, extra)
                du.barrier()
            if stop_at is not None and done >= stop_at and not is_last:
                break  # as if killed here: nothing more is written
        if info.enabled:
            _check_ranks_agree(model, info)
    finally:
        log.close()
    return {"iteration": it if max_iter > start_iter else start_iter - 1, "last_metrics": last_row,
            "eval": last_eval, "output_dir": str(out_dir), "final_checkpoint": str(final_path) if final_path else None,
            "seed": seed, "skipped_steps": skipped}


def _check_ranks_agree(model: torch.nn.Module, info: du.DistInfo) -> None:
    """DDP keeps replicas identical; verify it once at the end (a float64 checksum per rank)."""
    checksum = float(sum(p.detach().double().sum().item() for p in model.parameters()))
    sums: List[Any] = [None] * info.world_size
    dist.all_gather_object(sums, checksum)
    if len(set(sums)) != 1:
        raise GemsegError(f"model replicas diverged across ranks (parameter checksums {sums})")
    if info.is_main:
        logger.info("parameters identical on all %d ranks (checksum %.6f)", info.world_size, checksum)


# ---------------------------------------------------------------------------------------------------------------
# evaluation
def resolve_eval_dataset(cfg: Any):
    """The first ``DATASETS.TEST`` dataset (None when there is none or ``TEST.EVAL_PERIOD`` <= 0)."""
    from gemseg.data.layouts import OFFICIAL_NAMES, resolve_dataset

    names = cfg.DATASETS.TEST
    if isinstance(names, str):
        names = (names,)
    if int(cfg.TEST.EVAL_PERIOD) <= 0 or not names:
        return None
    name = names[0]
    try:
        return resolve_dataset(name, split=None if name in OFFICIAL_NAMES else "validation")
    except GemsegError as e:
        raise ConfigError(f"DATASETS.TEST {name!r}: {e} (set TEST.EVAL_PERIOD 0 to train without evaluation)"
                          ) from None


def _evaluate(model: torch.nn.Module, dataset: Any, cfg: Any) -> Dict[str, float]:
    """The four paper numbers (IoU, Fbeta, MAE, BER) of ``model`` on ``dataset`` (first EVAL_MAX_IMAGES)."""
    from gemseg.evaluation.evaluator import evaluate_model

    limit = int(cfg.TEST.EVAL_MAX_IMAGES) or None
    # model.predict switches to eval mode and back; no RNG is drawn, so evaluating does not perturb training
    results = evaluate_model(model, dataset, progress=False, limit=limit)
    return {k: float(v) for k, v in results.official().items() if k != "count"}
