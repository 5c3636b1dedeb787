#!/usr/bin/env python3
"""What `kvstore subscribe` does (python-socketio's Client, long-polling,
HOST from the environment), plus commands on stdin for the tests:
`reconnect` disconnects and connects again, `quit` ends (the end of stdin
does not: the subscriber then runs until killed)."""
import os
import sys
import threading

import socketio

client = socketio.Client()
printing = threading.Lock()


def say(line):
    # Handlers run on threads of their own: one write per line, so lines never interleave.
    with printing:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
host = os.getenv("HOST", "http://localhost:5000/")


@client.event
def connect():
    say("Connected")


@client.event
def disconnect(*reason):
    say("Disconnected")


@client.on("Update")
def update(message):
    say(message)


def commands():
    for line in sys.stdin:
        command = line.strip()
        if command == "reconnect":
            client.disconnect()
            client.connect(host, wait_timeout=10)
        elif command == "quit":
            client.disconnect()
            os._exit(0)


threading.Thread(target=commands, daemon=True).start()
# The namespace acknowledgement may take more than the default 1 s on a loaded test machine.
client.connect(host, wait_timeout=10)
say("transport " + client.transport())
threading.Event().wait()  # the commands thread ends the process
