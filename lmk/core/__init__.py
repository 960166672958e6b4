"""lmk.core: the torch-free ground the runtime, the exporter and training all stand on.

Errors, file output, command-line plumbing, landmark layouts, geometry (crops and affines),
input normalisation, the decode table with its numpy decoders, the ONNX metadata schema and the
accuracy metrics. Its only dependencies are numpy, OpenCV and click, so an ``lmk[cpu]``
deployment box can import every module here; ``tests/test_torch_free.py`` imports each one with
torch, onnx, onnxscript and scipy blocked.
"""
