"""edgeae: machine learning on board spacecraft and at the ground stations that receive their data.

Importing ``edgeae`` is cheap and needs only numpy: heavy dependencies (torch, OpenCV, onnxruntime,
ai-edge-litert, Ray) are imported inside the functions that use them.
"""

from edgeae._version import __version__

__all__ = ["__version__"]
