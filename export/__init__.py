"""edgeae.export: PyTorch models to ONNX, ORT and TFLite flight artifacts (fp32 and int8), with parity proofs.

Installed as ``edgeae.export`` (the folder sits at the repository top); needs the ``export`` extra.
"""
