"""Pure text parsers for what nodes report (/proc files, nvidia-smi CSV).

`procfs` and `nvidia_smi` also run ON the nodes, inside the probe bundle: they use only the
standard library and stay compatible with Python 3.6 (RHEL 8's `python3`).
"""
