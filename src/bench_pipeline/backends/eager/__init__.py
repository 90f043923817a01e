"""Eager PyTorch: the baseline every speedup is measured against."""
