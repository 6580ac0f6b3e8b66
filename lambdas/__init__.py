"""Lambda handlers of the stack (each a thin re-export of a :mod:`looking_glass.pipeline` function)."""
