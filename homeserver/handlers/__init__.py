"""Handlers: the rules of each area between the REST servlets and the stores."""
