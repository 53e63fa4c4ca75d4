"""ONNX export, graph fusion, fp16/int8 variants and the accuracy gate (needs the `train` extra)."""
