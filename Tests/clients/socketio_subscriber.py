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
host = os.getenv("HOST", "http://localhost:5000/")


@client.event
def connect():
    print("Connected", flush=True)


@client.event
def disconnect(*reason):
    print("Disconnected", flush=True)


@client.on("Update")
def update(message):
    print(message, flush=True)


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
print("transport " + client.transport(), flush=True)
threading.Event().wait()  # the commands thread ends the process
