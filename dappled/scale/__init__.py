"""Scale-out: run independent pieces of work (eval points, folder encodes, video groups) on local
processes or across a Ray cluster, with one driver that owns every output file.

``cluster`` connects to (or starts) a Ray runtime; ``runner`` is the one loop that submits work,
retries what a lost worker took with it, and hands each result to the driver exactly once;
``folder`` encodes a folder of images; ``gops`` encodes a video group by group.
"""
