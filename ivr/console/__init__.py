"""The console: web pages and a JSON API served by the switchboard itself.

The server (:mod:`ivr.console.web`) runs on its own thread with its own asyncio loop. It never
touches call state: it reads the view the driver's loop publishes (:mod:`ivr.console.hub`), reads
the store's SQLite file for history, and posts commands to the loop's inbox.
"""
