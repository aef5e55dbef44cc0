"""Dumps of every thread and greenlet on SIGURG.

trigger.py: signal -> dump thread; collect.py: -> plain data; render.py: -> text and journal fields.

Nothing here imports gevent: the master uses it too. The caller hands the trigger a thread
starter (gevent's original `start_new_thread` in a worker, threading's in the master) and
decides where the text goes (server.log, the journal, stdout).
"""
