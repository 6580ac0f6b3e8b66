"""Training data: chips from labelled imagery, the synthetic world and its training sets."""
