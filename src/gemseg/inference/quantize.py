"""int8 ONNX models: ONNX Runtime static quantization of an exported GEM graph, calibrated on images.

The fp32 graph of :func:`gemseg.inference.onnx_export.export_onnx` is rewritten in QDQ format (QuantizeLinear /
DequantizeLinear pairs around int8 operators, which ONNX Runtime fuses into integer kernels: VNNI on x86), with
per-channel int8 weights and asymmetric uint8 activations whose ranges come from calibration images (min/max of
every quantised tensor over the images). The calibration images go through the exact inference pre-processing
(:func:`gemseg.inference.preprocess.preprocess_image`): either the user's photos (``--calibration DIR``) or images
made on the fly by the procedural synthesis engine (the engine behind ``gem synth``).

Which operators become int8 was chosen by measurement (``benchmarks/int8_quality.py``, docs/inference.md):

* quantised: MatMul / Gemm / Conv whose second input is a weight (the projections, MLPs and convolutions that
  carry almost all FLOPs);
* kept in float: matrix products of two activations (attention scores, the final mask-embedding × pixel-feature
  product that makes the scores), depthwise convolutions and the first convolution on the image (int8 there moved
  GEM-Lite's masks most for the least time saved), the deformable attention's ``sampling_offsets`` and
  ``attention_weights`` (they decide where ``GridSample`` reads), and every non-GEMM operator (Softmax,
  LayerNormalization, GridSample, Sigmoid, the semantic-score sum), which int8 would only slow down.

The file's metadata gains ``gemseg.precision = int8`` (read by :class:`gemseg.inference.predictor.OnnxRunner`), the
calibration source and the number of quantised operators.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from gemseg.errors import GemsegError

PathLike = Union[str, os.PathLike]
DEFAULT_CALIBRATION_COUNT = 32
QUANTIZED_OP_TYPES = ("MatMul", "Gemm", "Conv")
# node-name patterns kept in float whatever their type (see the module docstring for why)
FLOAT_NODE_PATTERNS = ("sampling_offsets", "attention_weights")
SYNTH_CALIBRATION_SEED = 7_000_000  # far from gem synth's default seeds 0.., so calibration ≠ a training set


# ----------------------------------------------------------------------------------------------------------------
# calibration images
def list_calibration_images(folder: PathLike) -> List[Path]:
    """The image files in ``folder`` and its sub-folders (sorted; hidden files skipped)."""
    from gemseg.io.images import IMAGE_EXTENSIONS

    root = Path(folder)
    if not root.is_dir():
        raise GemsegError(f"calibration folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise GemsegError(f"no images in the calibration folder {root} (jpg, png, bmp, tif, webp)")
    return files


def synthesized_images(count: int, seed: int = SYNTH_CALIBRATION_SEED, width: int = 640,
                       height: int = 480) -> Iterator[np.ndarray]:
    """``count`` procedural glass scenes (H×W×3 uint8 RGB) from the ``gem synth`` engine, image i from seed+i."""
    from gemseg.synthesis import ProceduralEngine, SynthOptions

    engine = ProceduralEngine(SynthOptions(width=width, height=height))
    for i in range(int(count)):
        yield engine.render(seed + i)[0]


def calibration_batches(size: int, folder: Optional[PathLike] = None,
                        count: int = DEFAULT_CALIBRATION_COUNT) -> Iterator[np.ndarray]:
    """[1, 3, size, size] float32 network inputs (0–255, exactly as at inference) of the calibration images:
    the first ``count`` images of ``folder`` (all of them if fewer), or ``count`` synthesised images."""
    from gemseg.inference.preprocess import preprocess_image

    if count < 1:
        raise GemsegError("--calibration-count must be >= 1")
    images = list_calibration_images(folder)[:count] if folder is not None else synthesized_images(count)
    for image in images:
        yield preprocess_image(image, size)[0].numpy()[None]


class ImageCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over network inputs (built lazily: subclassing needs onnxruntime)."""

    def __new__(cls, batches: Iterator[np.ndarray], input_name: str = "image", total: Optional[int] = None):
        from onnxruntime.quantization import CalibrationDataReader
        from tqdm import tqdm

        class _Reader(CalibrationDataReader):
            def __init__(self):
                self._it = iter(batches)
                self._bar = tqdm(total=total, desc="calibrating", unit="img", leave=False, dynamic_ncols=True)

            def get_next(self) -> Optional[Dict[str, np.ndarray]]:
                batch = next(self._it, None)
                if batch is None:
                    self._bar.close()
                    return None
                self._bar.update(batch.shape[0])
                return {input_name: batch}

        return _Reader()


# ----------------------------------------------------------------------------------------------------------------
# operator selection
def _is_grouped(node) -> bool:
    """Depthwise (and other grouped) convolutions: memory-bound, little to gain from int8."""
    groups = next((a.i for a in node.attribute if a.name == "group"), 1)
    return groups > 1


def select_int8_nodes(model_proto, exclude: Sequence[str] = ()) -> List[str]:
    """Names of the nodes to quantise in ``model_proto`` (see the module docstring). ``exclude``: extra regular
    expressions on node names kept in float."""
    inits = {i.name: i for i in model_proto.graph.initializer}
    patterns = [re.compile(p) for p in (*FLOAT_NODE_PATTERNS, *exclude)]
    graph_input = model_proto.graph.input[0].name
    # the first convolution: the one reading the (normalised) image
    produced_by = {o: n for n in model_proto.graph.node for o in n.output}
    chosen = []
    for node in model_proto.graph.node:
        if node.op_type not in QUANTIZED_OP_TYPES or len(node.input) < 2 or node.input[1] not in inits:
            continue
        if any(p.search(node.name) for p in patterns):
            continue
        if node.op_type == "Conv":
            if _is_grouped(node) or _reads_image(node, produced_by, graph_input):
                continue
        chosen.append(node.name)
    return chosen


def _reads_image(node, produced_by: Dict, graph_input: str, depth: int = 6) -> bool:
    """Whether ``node``'s data input is the graph input through at most ``depth`` elementwise ops (normalisation)."""
    name = node.input[0]
    for _ in range(depth):
        if name == graph_input:
            return True
        src = produced_by.get(name)
        if src is None or src.op_type in QUANTIZED_OP_TYPES:
            return False
        name = src.input[0]
    return name == graph_input


# ----------------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_onnxruntime_quantization() -> Iterator[None]:
    """ONNX Runtime's quantiser logs a warning per skipped tensor and prints hints: keep the CLI output readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx_int8(fp32_path: PathLike, output: PathLike, calibration: Optional[PathLike] = None,
                       count: int = DEFAULT_CALIBRATION_COUNT, exclude: Sequence[str] = ()) -> Dict[str, str]:
    """Quantise the fp32 GEM graph ``fp32_path`` to int8 (QDQ) at ``output``; returns the metadata it added.

    ``calibration``: a folder of photos (its first ``count`` images), or None for ``count`` synthesised images.
    ``output`` is written in place (callers wanting atomicity pass a temporary path).
    """
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise GemsegError("int8 export needs onnx and onnxruntime: pip install 'gemseg[onnx]'") from None
    from gemseg.inference.onnx_export import read_metadata

    fp32_path, output = Path(fp32_path), Path(output)
    meta = read_metadata(fp32_path)
    size = int(meta.get("gemseg.img_size") or onnx.load(str(fp32_path), load_external_data=False)
               .graph.input[0].type.tensor_type.shape.dim[-1].dim_value)
    with tempfile.TemporaryDirectory(prefix="gemseg-int8-", dir=output.parent) as tmp, \
            _quiet_onnxruntime_quantization():
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference + graph clean-up recommended before quantisation (constants become initializers)
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        proto = onnx.load(str(prepared))
        nodes = select_int8_nodes(proto, exclude)
        if not nodes:
            raise GemsegError(f"{fp32_path}: no operator to quantise (no MatMul/Gemm/Conv with weights)")
        n_images = count if calibration is None else min(count, len(list_calibration_images(calibration)))
        reader = ImageCalibrationReader(calibration_batches(size, calibration, count),
                                        input_name=proto.graph.input[0].name, total=n_images)
        quantize_static(
            str(prepared), str(output), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=list(QUANTIZED_OP_TYPES),
            nodes_to_quantize=nodes, calibrate_method=CalibrationMethod.MinMax,
            calibration_providers=["CPUExecutionProvider"],
            extra_options={"CalibTensorRangeSymmetric": False, "CalibMovingAverage": False},
        )
    added = {"gemseg.precision": "int8", "gemseg.int8.nodes": str(len(nodes)),
             "gemseg.int8.calibration": (f"{n_images} images from {Path(calibration).name}/" if calibration is not None
                                         else f"{n_images} synthesised images (procedural engine)"),
             "gemseg.int8.scheme": "QDQ, per-channel int8 weights, uint8 activations, min/max calibration"}
    proto = onnx.load(str(output))
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in {**meta, **added}.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(output))
    return added
