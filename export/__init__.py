"""lmk.export: torch -> ONNX with the decode inside the graph (see DESIGN section 4)."""
