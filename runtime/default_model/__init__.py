"""The default model bundle shipped with clsrun: a char-CNN for Chinese review sentiment (int8 ONNX).

``clsrun predict`` uses it when no ``--model`` is given. How it was made is in the README.
"""

from pathlib import Path

PATH = Path(__file__).resolve().parent
