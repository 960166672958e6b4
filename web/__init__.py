"""``lmk web``: the landmark page (``web/page/``) on onnxruntime-web, served or exported.

The page needs no decode code: an lmk file is uint8 crop in, landmarks out, and describes
itself in its metadata. This package only finds the page, the onnxruntime-web files that
``npm ci`` put in ``web/node_modules`` and the models, then serves them with the headers
the WASM EP's threads need (:mod:`lmk.web.server`) or writes them to a folder for any
static host (:mod:`lmk.web.export`).
"""
