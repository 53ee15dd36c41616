"""`gpufleet top` (Textual), `gpufleet ls` and `gpufleet free`: the fleet in a terminal."""
