"""Training checkpoints in the official detectron2 format and names, plus everything an exact resume needs.

Files in ``OUTPUT_DIR`` (detectron2 ``PeriodicCheckpointer`` conventions):

* ``model_0000499.pth`` — after iteration index 499 (the 500th), every ``SOLVER.CHECKPOINT_PERIOD``;
* ``model_final.pth`` — at the end;
* ``model_best.pth`` — gemseg: the checkpoint with the best evaluation IoU so far;
* ``last_checkpoint`` — one line, the file name of the newest checkpoint (what ``--resume`` reads).

A checkpoint is ``{"model": official state dict (criterion.empty_weight included), "optimizer", "scheduler",
"iteration", "grad_scaler", "trainer": {...}}`` written with :func:`gemseg.modeling.checkpoint.save_checkpoint`
(temporary file + rename: a crash never leaves a truncated file under the final name). ``"iteration"`` is the
0-based index of the last completed iteration, as detectron2 stores it; training resumes at ``iteration + 1``.
``"trainer"`` holds gemseg's extra state: the run seed, the python/numpy/torch(/CUDA) RNG states, the data
stream position, the best IoU and the config text. Everything is plain tensors/numbers/strings so that the file
loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from gemseg.errors import CheckpointError
from gemseg.io.atomic import atomic_write_bytes
from gemseg.modeling.checkpoint import save_checkpoint

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"
PERIODIC_RE = re.compile(r"^model_(\d{7})\.pth$")


def periodic_name(iteration: int) -> str:
    """``model_0000499.pth`` for 0-based iteration 499."""
    return f"model_{iteration:07d}.pth"


# ---------------------------------------------------------------------------------------------------------------
# RNG states as weights_only-loadable values
def capture_rng_state() -> Dict[str, Any]:
    """python, numpy and torch (CPU, and CUDA when used) RNG states."""
    np_state = np.random.get_state(legacy=False)
    state: Dict[str, Any] = {
        "python": _py_state_to_plain(random.getstate()),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(_py_state_from_plain(state["python"]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": int(n["pos"])},
                         "has_gauss": int(n["has_gauss"]), "gauss": float(n["gauss"])})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_state_to_plain(st: tuple) -> Dict[str, Any]:
    version, internal, gauss = st
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss": float("nan") if gauss is None else float(gauss), "has_gauss": gauss is not None}


def _py_state_from_plain(d: Dict[str, Any]) -> tuple:
    return (int(d["version"]), tuple(int(x) for x in d["internal"].tolist()),
            float(d["gauss"]) if d["has_gauss"] else None)


# ---------------------------------------------------------------------------------------------------------------
class Checkpointer:
    """Writes and finds checkpoints in ``output_dir`` (call the writers on rank 0 only).

    Args:
        output_dir: ``OUTPUT_DIR``.
        keep_last: keep only the newest ``keep_last`` periodic ``model_XXXXXXX.pth`` files (0 = keep all, the
            detectron2 default); ``model_final.pth`` and ``model_best.pth`` are never deleted.
    """

    def __init__(self, output_dir: os.PathLike | str, keep_last: int = 0) -> None:
        self.dir = Path(output_dir)
        self.keep_last = int(keep_last)

    # -------------------------------------------------------------------------------------------------- writing
    def save(self, name: str, model: nn.Module, extra: Dict[str, Any], update_last: bool = True) -> Path:
        """Write ``name`` atomically, refuse non-finite weights, update ``last_checkpoint``, prune old files."""
        bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(f"refusing to write {name}: {len(bad)} tensor(s) hold NaN/Inf (first: {bad[0]})")
        path = self.dir / name
        save_checkpoint(model, path, extra=extra)
        if update_last:
            atomic_write_bytes(self.dir / LAST_CHECKPOINT, name.encode())
        self._prune()
        logger.info("saved checkpoint %s", path)
        return path

    def _prune(self) -> None:
        if self.keep_last <= 0:
            return
        periodic = sorted(p for p in self.dir.iterdir() if PERIODIC_RE.match(p.name))
        for old in periodic[:-self.keep_last]:
            old.unlink(missing_ok=True)

    # -------------------------------------------------------------------------------------------------- reading
    def last_checkpoint(self) -> Optional[Path]:
        """The file named by ``last_checkpoint`` (None when there is none)."""
        marker = self.dir / LAST_CHECKPOINT
        if not marker.is_file():
            return None
        name = marker.read_text().strip()
        path = self.dir / name
        if not name or not path.is_file():
            raise CheckpointError(f"{marker} names {name!r}, which does not exist in {self.dir}")
        return path

    def last_checkpoint_exists(self) -> bool:
        """Whether ``output_dir`` holds a ``last_checkpoint`` marker (a previous run)."""
        return (self.dir / LAST_CHECKPOINT).is_file()

    def periodic_files(self) -> List[Path]:
        return sorted(p for p in self.dir.iterdir() if PERIODIC_RE.match(p.name)) if self.dir.is_dir() else []


def load_training_state(path: os.PathLike | str) -> Dict[str, Any]:
    """Read a training checkpoint fully (tensors and plain values only)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any read failure becomes a one-line user error
        raise CheckpointError(f"cannot read training checkpoint {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise CheckpointError(f"{path} is not a detectron2-style checkpoint (no 'model' entry)")
    return payload
