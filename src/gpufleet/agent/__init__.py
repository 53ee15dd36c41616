"""The node agent: collects in the background, serves the last collection."""
