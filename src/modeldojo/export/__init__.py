"""Exporting a trained run: a self-contained folder (model, preprocessing, manifest.json), parity-checked.

First cut of issue 6: ONNX for the text and image tasks (fp32, or int8 weights); tabular raises a clear error.
"""
