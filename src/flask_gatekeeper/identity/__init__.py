"""Who is asking: ``proxies`` finds the client's address behind the trusted proxies and
names its key, ``keys`` holds the one rule every client key follows, ``addresses``
parses addresses and networks.

Nothing is imported here: the storages import ``identity.addresses`` alone, without
the Flask-facing ``proxies``.
"""
