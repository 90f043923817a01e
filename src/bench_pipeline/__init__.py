"""Which inference backend is fastest for your transformer, on your GPU, at your shapes, and at what cost."""

__version__ = "0.1"
