"""Exporting a trained run: a self-contained folder (model, preprocessing, manifest.json), parity-checked.

ONNX for every task (fp32, int8 or fp16 weights for neural tasks); tabular learners without a faithful
converter export their native file (tasks/tabular/export.py). `runtime.ExportedModel` runs a folder.
"""
