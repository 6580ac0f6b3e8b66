"""The model: DeepLab V3+, its losses and metrics, and the segmenter that runs it on tiles."""
