"""Offline VariBAD / BOReL: belief VAE, reward and state relabelling, off-policy RL on hyper-states."""
