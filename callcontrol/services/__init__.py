"""The service layer: the pure core's decisions carried out against the database.

Each operation is one short transaction: lock what it changes (the account row
first, then number rows in id order, so two operations never wait on each
other in a circle), ask the pure core (``domain.lifecycle``, ``domain.billing``),
store the outcome with an audit row, move money only through ``db.ledger.post``,
commit, and only then send mail. Errors are ``domain.errors`` classes.
"""
