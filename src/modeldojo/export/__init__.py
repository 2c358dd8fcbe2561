"""Exporting a trained run: a self-contained folder (model, preprocessing, manifest.json), parity-checked.

First cut of issue 6: ONNX for the text task (fp32, or int8 weights). Other tasks raise a clear error.
"""
