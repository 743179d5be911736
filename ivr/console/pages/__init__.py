"""The console's pages: each module's ``setup(app, console)`` adds its routes (found by
:func:`ivr.console.web.build_app`)."""
