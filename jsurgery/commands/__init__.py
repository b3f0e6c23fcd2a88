"""What the ``jsurgery`` command line runs: ``train`` (a DQN run, or one continued from a
transplanted run) and ``surgery`` (a saved run moved into a new architecture). These use the
surgery core, the RL pieces and the experiments' reports, so they sit above all three."""
