"""Plumbing shared by Tocsin's application services.

- :mod:`.registration`: load an appservice registration file (Application Service API, "Registration").
- :mod:`.client`: a small client-server API client that acts with the ``as_token`` and masquerades with
  ``user_id=`` (Application Service API, "Identity assertion").
- :mod:`.transactions`: the twisted.web resource that receives ``PUT /_matrix/app/v1/transactions/{txnId}``.
"""
