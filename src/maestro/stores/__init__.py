"""Session stores: the contract (``base``) and its backends."""
