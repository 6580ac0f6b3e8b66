"""Results: per-tile queries and rollups, output formats, figures and the web map."""
