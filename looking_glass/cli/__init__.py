"""The ``looking-glass`` command line."""
