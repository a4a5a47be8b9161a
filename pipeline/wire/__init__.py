"""The optional wire stamps: the kernel's arrival time of every byte, for ``make_client(wire=True)``.

``stamps`` reads the kernel's timestamps off a socket, ``reader`` and ``transport`` carry them
through httpcore2, ``client`` builds the SDK client that uses them.
"""
