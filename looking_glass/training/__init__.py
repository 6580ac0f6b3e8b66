"""Training: the SageMaker contract, the training loop and its local and cloud runners, evaluation."""
