"""Old graph <-> new graph: which new layer continues which old one, and which old unit space
each new space continues.

Layers are matched by path, then by the smallest edit (`layers.py`); the matching whose spaces
correspond with the fewest splits wins, a tie is refused (`choose.py`); spaces correspond through
matched leaves and the functions' inputs and outputs (`correspondence.py`), through removed layers
by position, and through layers inserted in a row (`inserted.py`).
"""
