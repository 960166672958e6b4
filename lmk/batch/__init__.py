"""lmk-batch: bulk annotation on Ray Data."""
