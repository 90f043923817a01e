"""ONNX Runtime: sessions over the exported (and optionally fused FP16) graph."""
