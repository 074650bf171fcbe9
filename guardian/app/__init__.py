"""The wiring: the ``guardian`` command line and ``guardian run``, which may import every layer."""
