"""The model layer: where the model comes from, its inputs and the FP32 eager reference."""
