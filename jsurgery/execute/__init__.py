"""Applying plans: the one-pass gather of each new leaf (`gather.py`), `transplant` and
`transplant_moments` (`transplant.py`), whole training states (`state.py`), a recurrent state
(`carry.py`) and orbax checkpoints restored straight into the new architecture
(`checkpoint.py`). Everything here is pure JAX over the plan's static index arrays.
"""
