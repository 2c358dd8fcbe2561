"""ONNX: a torch module to model.onnx (dynamic batch and sequence axes), int8 weight quantization, and
loading with ONNX Runtime that never follows external-data paths out of the export folder."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from ..errors import ConfigError

OPSET = 18
FILE = "model.onnx"


def from_torch(module, example_inputs: tuple, path: Path, input_names: list[str], output_name: str,
               dynamic_axes: dict[str, dict[int, str]]) -> None:
    import torch

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: ~1 s on MiniLM-size models, no onnxscript rewrite passes; the dynamo
        # exporter gave the same outputs (1e-7) in a probe but is slower to run.
        torch.onnx.export(module, example_inputs, str(path), input_names=input_names, output_names=[output_name],
                          dynamic_axes={**dynamic_axes, output_name: {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
    _check_self_contained(path)


def quantize_int8(path: Path) -> None:
    """Dynamic int8 quantization of the weights (activations stay float, quantized on the fly)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name(path.stem + ".int8.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer advises pre-processing on the root logger, every time
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    quantized.replace(path)


def _check_self_contained(path: Path) -> None:
    """Refuse ONNX files whose tensors point at external data outside their folder."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    folder = path.parent.resolve()
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                target = (folder / entry.value).resolve()
                if folder not in target.parents:
                    raise ConfigError(f"{path}: tensor {tensor.name} points outside the export folder "
                                      f"({entry.value}); refusing it")


def quantize_fp16(path: Path) -> None:
    """Half-precision weights and activations inside, float32 inputs and outputs: half the file, for GPUs
    and edge runtimes (on a CPU, ONNX Runtime computes most fp16 operators slower than fp32)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16  # shipped with onnxruntime

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
    onnx.save(model, str(path))


def save(model, path: Path) -> None:
    """An ONNX ModelProto built by a converter (tabular learners) to `path`, checked like torch exports."""
    import onnx

    onnx.save(model, str(path))
    _check_self_contained(path)


def session(path: Path, threads: int = 0):
    import onnxruntime

    _check_self_contained(path)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
