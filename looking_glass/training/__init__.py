"""Training: the SageMaker contract, the training loop and its local and cloud runners, evaluation.

- ``entrypoint``: the SageMaker training program (``python -m looking_glass.training.entrypoint``;
  ``training/train.py`` in the image calls it): paths, stop flag, error -> failure file and exit code.
- ``job``: one training job from inputs to saved model (:class:`~looking_glass.training.job.Run`).
- ``hyperparameters``: the table, parsing and validation; ``errors``: error types and exit codes.
- ``layout``: the container's paths; ``data``: channels, chips and batches; ``augment``: augmentation.
- ``loop``: compile, validate, the metric line, Keras callbacks; ``checkpoints``: save and resume.
- ``tensorboard``: event files; ``panels``: prediction panels and the progress GIF.
- ``contract``: what the stack, the CLI and the job share (metric definitions, channels, cloud runs).
- ``local``: ``train --local`` (the entry point in a subprocess); ``evaluate``: scoring a model.
"""
