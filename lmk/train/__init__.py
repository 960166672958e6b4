"""Training and evaluation: data sets, the ``lmk-train`` loop and ``lmk-eval``.

``lmk.train.data`` turns SynthFace seeds or annotation files into model crops;
``lmk.train.engine`` holds the loss/target wiring and the evaluation both commands share.
"""
