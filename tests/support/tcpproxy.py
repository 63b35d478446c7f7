"""A small loopback TCP proxy that can cut connections in the middle of a stream.

It sits between the job and a server (Dovecot) and forwards bytes both ways. It can

* cut a connection once the server has sent it more than ``cut_after`` bytes
  (``cut_connections`` says which connections, by their 0-based order of arrival), which
  lands the cut in the middle of a large FETCH; with ``stall=True`` it goes silent there
  instead (both ways, socket left open), as a dead NAT mapping does: only a client-side
  read time-out gets the client out;
* cut a connection when the client sends a command containing ``cut_on_command`` (e.g.
  ``b"UID MOVE"``), either before the server sees it or, with ``deliver_command=True``,
  right after forwarding it (the server acts, the client never hears back);
* cut every open connection on demand (:meth:`TcpProxy.cut_all`), e.g. while the client
  sits in IDLE.

A cut closes both sockets with SO_LINGER 0 (a TCP reset), as a NAT box or a restarted
load balancer would. Every wait is bounded; nothing listens beyond 127.0.0.1.

Example::

    with TcpProxy(dovecot.port, cut_after=1_000_000, cut_connections={0}) as proxy:
        settings.imap.port = proxy.port  # the first connection dies after ~1 MB
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Container
from types import TracebackType

__all__ = ["TcpProxy"]

_HOST = "127.0.0.1"
_CHUNK = 64 * 1024
_POLL_S = 0.2
_CONNECT_TIMEOUT_S = 5.0
_JOIN_TIMEOUT_S = 5.0


class _Always:
    def __contains__(self, item: object) -> bool:
        return True


ALWAYS: Container[int] = _Always()


class _Link:
    """One client connection and its upstream twin."""

    def __init__(self, index: int, client: socket.socket, upstream: socket.socket) -> None:
        self.index = index
        self.client = client
        self.upstream = upstream
        self.down_bytes = 0  # server -> client
        self.up_bytes = 0  # client -> server
        self.closed = threading.Event()
        self.was_cut = False

    def close(self, reset: bool) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()


class TcpProxy:
    """Forward 127.0.0.1:<port> to 127.0.0.1:<target_port>; see the module docstring."""

    def __init__(
        self,
        target_port: int,
        *,
        cut_after: int | None = None,
        cut_connections: Container[int] = ALWAYS,
        stall: bool = False,
        cut_on_command: bytes | None = None,
        deliver_command: bool = False,
    ) -> None:
        self.target_port = target_port
        self.cut_on_command = cut_on_command
        self.deliver_command = deliver_command
        self.cut_after = cut_after
        self.cut_connections = cut_connections
        self.stall = stall
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((_HOST, 0))
        self._listener.listen(16)
        self._listener.settimeout(_POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="tcpproxy-accept", daemon=True)

    # -- what happened -------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self._links)

    @property
    def cuts(self) -> int:
        """Connections this proxy cut (not those the ends closed themselves)."""
        with self._lock:
            return sum(link.was_cut for link in self._links)

    def bytes_down(self, index: int) -> int:
        """Bytes the server sent on connection ``index``."""
        with self._lock:
            return self._links[index].down_bytes

    # -- control ----------------------------------------------------------------------

    def cut_all(self) -> int:
        """Reset every open connection now; returns how many were cut."""
        with self._lock:
            open_links = [link for link in self._links if not link.closed.is_set()]
        for link in open_links:
            link.was_cut = True
            link.close(reset=True)
        return len(open_links)

    def heal(self) -> None:
        """Stop cutting connections from now on."""
        self.cut_after = None
        self.cut_on_command = None

    def __enter__(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        self._acceptor.join(timeout=_JOIN_TIMEOUT_S)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            links = list(self._links)
            threads = list(self._threads)
        for link in links:
            link.close(reset=False)
        for thread in threads:
            thread.join(timeout=_JOIN_TIMEOUT_S)

    # -- forwarding -------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((_HOST, self.target_port), timeout=_CONNECT_TIMEOUT_S)
            except OSError:
                client.close()
                continue
            with self._lock:
                link = _Link(len(self._links), client, upstream)
                self._links.append(link)
                thread = threading.Thread(
                    target=self._pump, args=(link,), name=f"tcpproxy-{link.index}", daemon=True
                )
                self._threads.append(thread)
            thread.start()

    def _stay_silent(self, link: _Link) -> None:
        """Forward nothing more (what the client sends is swallowed) until the client
        hangs up, someone cuts the link, or the proxy closes."""
        while not link.closed.is_set() and not self._stopping.is_set():
            readable, _, _ = select.select([link.client], [], [], _POLL_S)
            if readable and not link.client.recv(_CHUNK):
                return

    def _pump(self, link: _Link) -> None:
        """Forward both directions of one link with select(); cut when told to."""
        link.client.setblocking(True)
        link.upstream.setblocking(True)
        peers = {link.client: link.upstream, link.upstream: link.client}
        try:
            while not link.closed.is_set() and not self._stopping.is_set():
                try:
                    readable, _, _ = select.select(list(peers), [], [], _POLL_S)
                except (OSError, ValueError):
                    break  # a socket was closed under us (cut_all)
                for source in readable:
                    data = source.recv(_CHUNK)
                    if not data:
                        link.close(reset=False)
                        return
                    if source is link.upstream:
                        limit = self.cut_after
                        if (
                            limit is not None
                            and link.index in self.cut_connections
                            and link.down_bytes + len(data) > limit
                        ):
                            # Forward up to the limit, then reset both ends mid-stream.
                            keep = max(0, limit - link.down_bytes)
                            if keep:
                                link.client.sendall(data[:keep])
                            link.down_bytes += keep
                            link.was_cut = True
                            if self.stall:
                                self._stay_silent(link)
                            link.close(reset=True)
                            return
                        link.down_bytes += len(data)
                    else:
                        link.up_bytes += len(data)
                        pattern = self.cut_on_command
                        if pattern is not None and link.index in self.cut_connections and pattern in data:
                            if self.deliver_command:
                                link.upstream.sendall(data)
                                time.sleep(_POLL_S)  # let the server act on it
                            link.was_cut = True
                            link.close(reset=True)
                            return
                    peers[source].sendall(data)
        except OSError:
            pass
        finally:
            link.close(reset=False)
