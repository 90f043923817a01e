"""TensorRT: engines built from the shared ONNX export, and their runtime."""
