"""Provider adapters: thin transformations between our chat shape and each provider's API.

They know nothing of credits, users or databases.
"""
