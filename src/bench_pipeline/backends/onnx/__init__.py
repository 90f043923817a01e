"""The shared ONNX export: a build-only backend (no runtime) that ONNX Runtime and TensorRT declare they need."""
