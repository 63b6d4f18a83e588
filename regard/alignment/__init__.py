"""Attention as word alignment: links from attention matrices, symmetrisation, and AER.

- :mod:`~regard.alignment.links`: links from a word attention matrix, the Pharaoh format.
- :mod:`~regard.alignment.symmetrize`: combining the links of the two directions.
- :mod:`~regard.alignment.gold`: reading gold (NAACL 2003) and predicted (Pharaoh) files.
- :mod:`~regard.alignment.score`: precision, recall and alignment error rate.
- :mod:`~regard.alignment.detok`: pre-tokenised input onto a model's own text and back.
- :mod:`~regard.alignment.forced`: a model's attention over a given translation.
"""
