"""lmk: facial landmarks from PyTorch to ONNX with the decode inside the graph.

This package root stays free of torch imports so that ``lmk.runtime`` (and the numpy-only
modules such as ``lmk.core.layouts``) work on a deployment box without PyTorch.
"""

__version__ = "0.1.0"
