"""Example training scripts used by ``labbook demo`` (packaged as ``labbook_examples``)."""
