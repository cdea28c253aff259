"""The directory the runner puts first on ``PYTHONPATH`` for child processes.

It holds one module meant to be imported from there, as a top-level module:
``sitecustomize``, which Python's ``site`` imports at the start-up of every
Python child (see its docstring); it loads ``_startup``, the hook proper,
by file path.  This ``__init__`` only makes the
directory a package, so that it is installed with socks5client like any
other; nothing imports ``socks5client._hook`` itself.
"""
