"""Exports a leaf for serving: ONNX graphs, a torch-free encoder, the asymmetric pair."""
