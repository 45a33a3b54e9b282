#!/usr/bin/env python3
"""Cost of one readiness wait with N idle connections and one ready: poll vs epoll.

Why the server uses epoll (through tokio/mio): a server with many mostly-idle clients pays
for every idle connection on every wait with select/poll, and only for the ready ones with
epoll. select additionally cannot watch descriptors numbered 1024 or higher (FD_SETSIZE).

Run: python3 bench/poll_vs_epoll.py
"""
import resource
import select
import socket
import time

WAITS = 2000


def measure(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * n + 64)), hard))
    pairs = [socket.socketpair() for _ in range(n)]
    ready_a, ready_b = pairs[0]
    ready_b.send(b"x")  # one connection always has data

    poller = select.poll()
    for a, _ in pairs:
        poller.register(a, select.POLLIN)
    start = time.perf_counter()
    for _ in range(WAITS):
        poller.poll(0)
    poll_us = (time.perf_counter() - start) / WAITS * 1e6

    ep = select.epoll()
    for a, _ in pairs:
        ep.register(a.fileno(), select.EPOLLIN)
    start = time.perf_counter()
    for _ in range(WAITS):
        ep.poll(0)
    epoll_us = (time.perf_counter() - start) / WAITS * 1e6

    too_high = max(a.fileno() for a, _ in pairs) >= 1024
    select_note = "impossible" if too_high else ""
    if not select_note:
        fds = [a for a, _ in pairs]
        start = time.perf_counter()
        for _ in range(WAITS):
            select.select(fds, [], [], 0)
        select_note = f"{(time.perf_counter() - start) / WAITS * 1e6:9.1f}"
    for a, b in pairs:
        a.close()
        b.close()
    ep.close()
    return poll_us, epoll_us, select_note


print(f"{'idle conns':>10} {'select us':>16} {'poll us':>9} {'epoll us':>9}")
for n in (10, 100, 1000, 5000):
    poll_us, epoll_us, select_note = measure(n)
    print(f"{n:>10} {select_note:>16} {poll_us:9.1f} {epoll_us:9.1f}")
