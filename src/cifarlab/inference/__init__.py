"""Stage 5, using a trained model: loaded from a run folder or checkpoint (`load_model`),
evaluated on a split (`evaluate`), applied to image files (`predict`), exported to ONNX or
TorchScript (`export`)."""

from cifarlab.inference.evaluation import evaluate, predict_split
from cifarlab.inference.loading import load_model, model_from_checkpoint

__all__ = ["evaluate", "load_model", "model_from_checkpoint", "predict_split"]
