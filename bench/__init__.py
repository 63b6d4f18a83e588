"""Side-by-side benchmark of Regard against Joey NMT and OpenNMT-py (``make bench``).

Modules:

=============  ==============================================================
install.py     the peers' virtual environments in the cache, pinned, stamped
data.py        Multi30k en–fr prepared once for all three (same subwords)
configs.py     the same model written as a Regard, Joey NMT and OpenNMT-py config
measure.py     subprocesses with their own peak RSS, log parsing, SIGINT deadlines
systems.py     train / translate one system and read back its numbers
regard_run.py  the Regard subprocess (training with step timing, translation)
flops.py       Regard's model FLOPs per target token and the matmul ceiling
peers.py       the command line: schedule, table, ``runs/bench/peers.json``
scale.py       cost against corpus size (0.2M–20M pairs), Joey NMT beside it
scale_run.py   the Regard subprocess of scale.py (prepare, train, pieces for Joey)
=============  ==============================================================

See docs/PERFORMANCE.md for what is measured and how.
"""
