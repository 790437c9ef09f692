"""The pure core of callcontrol: decisions and state machines over plain data.

Nothing in this package imports asyncio, aiohttp, SQLAlchemy or any I/O library;
every function here can be tested by feeding data and reading the result.
"""
