"""The tile-enumerator Lambda (``handler.handler``, started by AOI uploads to the trigger bucket)."""
