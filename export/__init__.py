"""lmk.export: torch -> ONNX with the decode inside the graph (the file's contract: docs/design.md section 7)."""
