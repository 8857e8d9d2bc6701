"""Files copied into exported checkpoints; each must import nothing from blockprune."""
