"""The SageMaker training entry point (``python -m training.train``; the image is ``training/Dockerfile``)."""
