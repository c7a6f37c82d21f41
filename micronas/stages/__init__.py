"""The stages behind `micronas.api`, one module each: train, export (+ QAT), profile, search.

`micronas.api` is the public facade; these modules are its implementation.
"""
