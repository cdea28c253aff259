"""The TCP tunnel of a GSS-API handshake that agreed on integrity or confidentiality.

RFC 1961 section 5: after such a handshake every byte each way travels as
``01 03 LEN TOKEN`` frames, each token one ``gss_wrap`` of a piece of the
stream.  ``sock.py`` switches a socksocket to :class:`GSSAPISocket` (or to a
class derived from the user's subclass and this one) only then, the way a
``SOCK_DGRAM`` socket becomes the UDP variant; every other socket, level 0
included, keeps the C methods on its data path.

What the class guarantees: no byte reaches the descriptor unwrapped, and no
byte is handed to the caller that did not come out of ``gss_unwrap``.  The
methods a caller can reach either go through the frames (``send``,
``sendall``, ``sendto``, ``sendmsg`` without ancillary data, ``sendfile``,
``recv``, ``recv_into``, ``recvfrom``, ``recvfrom_into``, ``recvmsg`` and
``recvmsg_into`` without ancillary data, ``makefile``, which uses
``send``/``recv_into``) or are refused with ``EOPNOTSUPP`` because a new
owner of the descriptor would bypass the wrapping (``dup``, ``detach`` --
and so ``ssl.SSLContext.wrap_socket``, which detaches -- and
``set_inheritable(True)``).

Frames are unrelated to the application's writes: incoming frames are
buffered (``_inbuf``) until whole, then unwrapped into ``_rbuf``, from which
reads are served.  An outgoing frame the kernel takes only part of stays in
``_out`` and goes out before anything else at the next send, receive,
``shutdown`` or ``close``: dropping it would corrupt the stream, and it
cannot be wrapped again (Kerberos tokens carry sequence numbers).  ``send``
counts it as taken, as a plain socket counts what sits in the kernel's
queue, so a receive that waits keeps writing it out meanwhile: the proxy
may need all of it before it answers.

Timeouts behave as on a plain socket: a blocking socket waits, one with a
timeout raises ``socket.timeout`` when the call's one deadline passes, and
a non-blocking socket (or ``MSG_DONTWAIT``) raises ``BlockingIOError``
instead of waiting -- except to finish writing a frame it has started,
which it waits for at most :data:`NONBLOCKING_FRAME_WAIT` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import operator
import os
import select
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from ._codec import GSSAPI_VERSION, GSSAPIMessage, encode_gssapi_frame
from ._negotiate import PlainSocket
from .errors import ProxyProtocolError
from .sock import _defuse, _owned_elsewhere, socksocket

if TYPE_CHECKING:
    from .auth import Protection

__all__ = ["GSSAPISocket"]

# Plain ints: bitwise operations on the socket module's IntFlag members cost more.
_MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
_MSG_PEEK = int(socket.MSG_PEEK)
_MSG_WAITALL = int(socket.MSG_WAITALL)
_MSG_NOSIGNAL = int(getattr(socket, "MSG_NOSIGNAL", 0))
#: Flags that mean the same for the wrapped stream as for the raw one.
_SEND_FLAGS = _MSG_DONTWAIT | _MSG_NOSIGNAL
_RECV_FLAGS = _MSG_DONTWAIT | _MSG_PEEK | _MSG_WAITALL
#: How much raw data one read asks the kernel for: a whole maximal frame.
_READ_SIZE = 65536 + 4
_ENCAPSULATED = GSSAPIMessage.ENCAPSULATED

#: Longest a non-blocking send waits for the rest of a frame whose start the
#: kernel took: a half-written frame left behind would hold back everything
#: after it (the peer cannot unwrap part of a token).
NONBLOCKING_FRAME_WAIT = 5.0

#: How often a receive waiting for input looks again at a frame another
#: thread is sending: that thread may leave part of it queued.
_SENDER_RECHECK = 0.05


def _unsupported(what: str) -> OSError:
    return OSError(
        errno.EOPNOTSUPP,
        f"{what} is not supported on a socksocket whose GSS-API handshake agreed on"
        " per-message protection: every byte must be wrapped by this object",
    )


def _refused_handover(what: str) -> OSError:
    return OSError(
        errno.EOPNOTSUPP,
        f"{what}: this socksocket's tunnel is GSS-API protected, and a new owner of the"
        " descriptor would read and write the proxy's frames unwrapped; for TLS on top,"
        " use ssl.SSLContext.wrap_bio with this socket's send/recv, or gssapi_protection="
        "'none' and wrap_socket (TLS then protects the data)",
    )


class GSSAPISocket(socksocket):
    """A socksocket whose data is wrapped in RFC 1961 frames (integrity or confidentiality).

    Made by ``sock.py`` after the handshake, never directly.
    """

    _gss: Protection
    _rbuf: bytearray
    _inbuf: bytearray
    _out: bytearray
    _eof: bool
    _send_lock: threading.Lock
    _recv_lock: threading.Lock
    _timeout: float | None

    def _start_protection(self, protection: Protection, pending: bytes) -> None:
        """Take over the handshake's protection and the bytes it unwrapped past the reply."""
        self._gss = protection
        self._rbuf = bytearray(pending)
        self._inbuf = bytearray()
        self._out = bytearray()
        self._eof = False
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        # The timeout the user set lives here; the descriptor itself stays
        # non-blocking (C-level timeout 0).  With a C-level timeout, CPython
        # waits inside each recv/send for up to the whole timeout, and each
        # bit of progress (an empty frame, a byte of a frame, a partial
        # write) would start that wait again, past the call's one deadline:
        # only _wait may wait, and it knows the deadline.  One setting for
        # the object, never changed per call, because a reader and a writer
        # thread may share it.
        self._timeout = PlainSocket.gettimeout(self)
        PlainSocket.settimeout(self, 0.0)

    @property
    def gssapi_protection(self) -> str:
        """The per-message protection of this tunnel: ``"integrity"`` or ``"confidentiality"``."""
        return "confidentiality" if self._gss.level == 2 else "integrity"

    # -- timeout: the user's, kept apart from the descriptor's --------------

    def settimeout(self, value: float | None) -> None:
        """As on a plain socket; the descriptor stays non-blocking (see ``_start_protection``)."""
        # Validated as the C method does (same errors), without it: this
        # object's C-level timeout must stay 0.
        if value is None:
            self._timeout = None
            return
        seconds = value if isinstance(value, float) else float(operator.index(value))
        if seconds != seconds:
            raise ValueError("Invalid value NaN (not a number)")
        if seconds < 0:
            raise ValueError("Timeout value out of range")
        self._timeout = seconds

    def gettimeout(self) -> float | None:
        """The timeout set by the user, as on a plain socket."""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """As on a plain socket: ``settimeout(None)`` or ``settimeout(0.0)``."""
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        """As on a plain socket: False when the timeout is 0."""
        return self._timeout != 0.0

    @property
    def timeout(self) -> float | None:
        """The timeout set by the user (the C attribute would say 0.0)."""
        return self._timeout

    # -- waiting ------------------------------------------------------------

    def _deadline(self, flags: int) -> tuple[float | None, bool]:
        """``(deadline, nowait)`` of one call: None waits forever."""
        timeout = self._timeout
        if timeout == 0.0 or flags & _MSG_DONTWAIT:
            return None, True
        return (None if timeout is None else time.monotonic() + timeout), False

    def _wait(self, event: int, deadline: float | None, recheck: float | None = None) -> int:
        """Wait until the descriptor is ready for ``event``; the events that came.

        ``socket.timeout`` at the deadline; 0 when ``recheck`` seconds passed
        first (the caller has something else to look at again).
        """
        poller = select.poll()
        poller.register(self.fileno(), event)
        until = None if recheck is None else time.monotonic() + recheck
        while True:
            now = time.monotonic()
            if deadline is None:
                wait_ms = None
            else:
                left = deadline - now
                if left <= 0:
                    raise socket.timeout("timed out")
                wait_ms = int(left * 1000) + 1
            if until is not None:
                if now >= until:
                    return 0
                until_ms = int((until - now) * 1000) + 1
                wait_ms = until_ms if wait_ms is None else min(wait_ms, until_ms)
            ready = poller.poll(wait_ms)
            if ready:
                return ready[0][1]

    # -- writing ------------------------------------------------------------

    def _drain(self, deadline: float | None, nowait: bool) -> None:
        """Write out every queued frame byte, or raise (the rest stays queued)."""
        out = self._out
        while out:
            # After every partial write too: a peer that reads slowly must
            # not keep the call going past its deadline.
            if deadline is not None and time.monotonic() >= deadline:
                raise socket.timeout("timed out")
            try:
                sent = PlainSocket.send(self, out, _MSG_DONTWAIT | _MSG_NOSIGNAL)
            except BlockingIOError:
                if nowait:
                    raise
                self._wait(select.POLLOUT, deadline)
                continue
            del out[:sent]

    def _queue(self, data: Any) -> int:
        """Wrap the first piece of ``data`` into a queued frame; its length."""
        view = memoryview(data).cast("B")
        piece = bytes(view[: self._gss.max_payload])
        if piece:
            self._out += encode_gssapi_frame(_ENCAPSULATED, self._gss.wrap(piece))
        return len(piece)

    def _check_send_flags(self, flags: int) -> None:
        if flags & ~_SEND_FLAGS:
            raise _unsupported(f"send flags {flags:#x}")

    def send(self, data: Any, flags: int = 0) -> int:
        """Wrap and send up to one frame of ``data``; the number of its bytes taken."""
        self._check_send_flags(flags)
        with self._send_lock:
            deadline, nowait = self._deadline(flags)
            # What an earlier call could not write goes first; until it is
            # out, a non-blocking socket takes nothing new.
            self._drain(deadline, nowait)
            if nowait and not _writable(self):
                raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            taken = self._queue(data)
            self._finish_frame(deadline, nowait)
            return taken

    def _finish_frame(self, deadline: float | None, nowait: bool) -> None:
        """Write the frame just queued; the data is taken even if part of it must wait."""
        if nowait:
            deadline, nowait = time.monotonic() + NONBLOCKING_FRAME_WAIT, False
        # On a timeout the rest stays queued: it goes out first at the next call.
        with contextlib.suppress(socket.timeout):
            self._drain(deadline, nowait)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Wrap and send all of ``data`` (in frames of at most 64 KiB), within one deadline."""
        self._check_send_flags(flags)
        view = memoryview(data).cast("B")
        with self._send_lock:
            deadline, nowait = self._deadline(flags)
            self._drain(deadline, nowait)
            offset = 0
            while offset < len(view):
                offset += self._queue(view[offset:])
                self._drain(deadline, nowait)

    def sendto(self, data: Any, *args: Any) -> int:
        """``send``: the tunnel is connected, so the address is ignored, as the kernel does."""
        if len(args) not in (1, 2):
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        return self.send(data, args[0] if len(args) == 2 else 0)

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        """The buffers, joined, as one ``send``; ancillary data is refused."""
        if ancdata:
            raise _unsupported("sendmsg with ancillary data (send_fds)")
        data = b"".join(bytes(memoryview(b).cast("B")) for b in buffers)
        return self.send(data, flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Through :meth:`send`: ``os.sendfile`` would write the file unwrapped."""
        return self._sendfile_use_send(file, offset, count)  # type: ignore[attr-defined,no-any-return]

    def _sendfile_use_sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        return self._sendfile_use_send(file, offset, count)  # type: ignore[attr-defined,no-any-return]

    # -- reading ------------------------------------------------------------

    def _fill(self, deadline: float | None, nowait: bool) -> None:
        """Read from the descriptor until at least one frame has been unwrapped, or EOF."""
        rbuf, inbuf = self._rbuf, self._inbuf
        before = len(rbuf)
        while len(rbuf) == before and not self._eof:
            self._decode()
            if len(rbuf) != before:
                return
            # After every chunk: a proxy sending empty frames, or a frame a
            # byte at a time, must not keep the call going past its deadline.
            if deadline is not None and time.monotonic() >= deadline:
                raise socket.timeout("timed out")
            try:
                chunk = PlainSocket.recv(self, _READ_SIZE, _MSG_DONTWAIT)
            except BlockingIOError:
                if nowait:
                    raise
                self._await_input(deadline)
                continue
            if not chunk:
                if inbuf:
                    raise ProxyProtocolError(
                        f"the proxy closed the GSS-API protected tunnel in the middle of a"
                        f" frame ({len(inbuf)} bytes of it had arrived)"
                    )
                self._eof = True
                return
            inbuf += chunk

    def _decode(self) -> None:
        """Unwrap every whole frame in ``_inbuf`` into ``_rbuf``."""
        inbuf = self._inbuf
        while inbuf:
            # VER from the first octet and MTYP from the second, as
            # _codec.parse_gssapi_frame does: an abort is two octets and
            # complete, so waiting for a whole header would leave it
            # unreported until a timeout (or forever).
            if inbuf[0] != GSSAPI_VERSION or (len(inbuf) >= 2 and inbuf[1] != _ENCAPSULATED):
                what = (
                    "an abort (01 ff)"
                    if inbuf[:2] == b"\x01\xff"
                    else f"{bytes(inbuf[:2]).hex(' ')} where a frame (01 03) was due"
                )
                raise ProxyProtocolError(
                    f"the proxy broke the GSS-API protected tunnel's framing: it sent {what}"
                )
            if len(inbuf) < 4:
                return
            end = 4 + ((inbuf[2] << 8) | inbuf[3])
            if len(inbuf) < end:
                return
            token = bytes(inbuf[4:end])
            if token:  # an empty frame carries nothing to unwrap
                # Unwrapped before it leaves _inbuf: a token that fails
                # verification stays there and fails every later recv too,
                # so a caller that reads on after the error cannot get the
                # stream with a piece missing.
                self._rbuf += self._gss.unwrap(token)
            del inbuf[:end]

    def _await_input(self, deadline: float | None) -> None:
        """Wait for input; meanwhile write out the queued frame as the socket takes it.

        send() reported the queued frame's data as taken, as a plain socket
        whose kernel then delivers it; here no one else would, and the proxy
        may need all of it before it answers what this call waits for.
        """
        lock = self._send_lock
        while True:
            if self._out and lock.acquire(blocking=False):
                broken = False
                try:
                    self._drain(None, True)
                except BlockingIOError:
                    pass
                except OSError:
                    broken = True
                finally:
                    lock.release()
                if broken:
                    # Reading reports it (or the data that came first), and
                    # the next send raises.
                    self._wait(select.POLLIN, deadline)
                    return
                if not self._out:
                    continue
                # Not holding the lock while waiting: a sending thread's
                # deadline must not depend on this call's.
                events = self._wait(select.POLLIN | select.POLLOUT, deadline)
            elif lock.locked():
                # A sending thread is writing; it may stop at its own
                # deadline with part of a frame queued, so look again soon.
                events = self._wait(select.POLLIN, deadline, _SENDER_RECHECK)
            elif self._out:
                continue  # the sending thread let go of the lock just now
            else:
                self._wait(select.POLLIN, deadline)
                return
            if events & ~select.POLLOUT:
                return  # input, the end of it, or an error for the read to report

    def _flush_before_reading(self) -> None:
        """Push out a queued frame (without waiting) before waiting for an answer to it."""
        if self._out and self._send_lock.acquire(blocking=False):
            try:
                self._drain(None, True)
            except OSError:
                pass  # it stays queued; the next send reports trouble
            finally:
                self._send_lock.release()

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Up to ``bufsize`` unwrapped bytes; ``b""`` at the end of the stream."""
        if flags & ~_RECV_FLAGS:
            raise _unsupported(f"recv flags {flags:#x}")
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        with self._recv_lock:
            if self.fileno() == -1:
                # What a plain socket raises: the plaintext still buffered
                # belongs to a closed connection.
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            if not self._rbuf and not self._eof:
                self._flush_before_reading()
            deadline, nowait = self._deadline(flags)
            rbuf = self._rbuf
            want = bufsize if flags & _MSG_WAITALL else 1
            while len(rbuf) < want and not self._eof and bufsize:
                try:
                    self._fill(deadline, nowait)
                except (BlockingIOError, socket.timeout):
                    if rbuf and flags & _MSG_WAITALL:
                        break  # what MSG_WAITALL gives when interrupted: what came
                    raise
            data = bytes(rbuf[:bufsize])
            if not flags & _MSG_PEEK:
                del rbuf[:bufsize]
            return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """As :meth:`recv`, into ``buffer``."""
        return self._recv_into(buffer, nbytes, flags, "recv_into")

    def _recv_into(self, buffer: Any, nbytes: int, flags: int, what: str) -> int:
        view = _writable_view(buffer, what)
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        if nbytes == 0:
            nbytes = len(view)
        data = self.recv(nbytes, flags)
        view[: len(data)] = data
        return len(data)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        """``(recv(...), None)``, as a connected TCP socket gives."""
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        """``(recv_into(...), None)``, as a connected TCP socket gives."""
        return self._recv_into(buffer, nbytes, flags, "recvfrom_into"), None

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> tuple[Any, ...]:
        """``(data, [], 0, None)``; ancillary data is refused (it cannot match frames)."""
        if ancbufsize:
            raise _unsupported("recvmsg with ancillary data (recv_fds)")
        return self.recv(bufsize, flags), [], 0, None

    def recvmsg_into(self, buffers: Any, ancbufsize: int = 0, flags: int = 0) -> tuple[Any, ...]:
        """Scatter one :meth:`recv` over ``buffers``; ancillary data is refused."""
        if ancbufsize:
            raise _unsupported("recvmsg_into with ancillary data")
        # All checked before anything is read: a buffer refused after the
        # recv would lose what was taken for it, which a plain socket never does.
        refused = TypeError(
            "recvmsg_into() argument 1 must be an iterable of single-segment read-write buffers"
        )
        try:
            views = [memoryview(b).cast("B") for b in buffers]
        except TypeError:
            raise refused from None
        if any(view.readonly for view in views):
            raise refused
        data = self.recv(sum(len(v) for v in views), flags)
        offset = 0
        for view in views:
            part = data[offset : offset + len(view)]
            view[: len(part)] = part
            offset += len(part)
        return len(data), [], 0, None

    # -- handing over, ending -----------------------------------------------

    def dup(self) -> GSSAPISocket:
        """Refused: two objects cannot share one GSS-API context's sequence of frames."""
        raise _refused_handover("dup() is refused")

    def detach(self) -> int:
        """Refused, and the socket is closed (``ssl`` has built its own object on it by now)."""
        fd = PlainSocket.detach(self)
        # As socksocket.detach before a handshake: whatever object ssl made
        # on the number outlives the refusal, so it gets a dead socket.
        _defuse(fd)
        if not _owned_elsewhere(fd, self):
            os.close(fd)
        raise _refused_handover(
            "detach() (and so ssl wrap_socket) is refused; the socket is closed"
        )

    def set_inheritable(self, inheritable: bool) -> None:
        """``set_inheritable(True)`` is refused: a child would write to the tunnel unwrapped."""
        if inheritable:
            raise _refused_handover("set_inheritable(True) is refused")
        PlainSocket.set_inheritable(self, False)

    def shutdown(self, how: int) -> None:
        """As usual, after writing out any queued frame (within the socket's timeout).

        A non-blocking socket waits up to :data:`NONBLOCKING_FRAME_WAIT` for
        it, as a non-blocking send does for the frame it started.
        """
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and self.fileno() != -1:
            deadline, nowait = self._deadline(0)
            if nowait:
                deadline = time.monotonic() + NONBLOCKING_FRAME_WAIT
            # Shutting down anyway: if the frame cannot go, the peer sees it cut.
            with self._send_lock, contextlib.suppress(socket.timeout):
                self._drain(deadline, False)
        PlainSocket.shutdown(self, how)

    def close(self) -> None:
        """Close, after writing out a queued frame (within the socket's timeout).

        send() reported that frame's data as taken, and a plain socket's
        kernel delivers what it took after close(); here only this object
        can.  A blocking or non-blocking socket waits up to
        :data:`NONBLOCKING_FRAME_WAIT`: close() must not hang on a proxy that
        stopped reading.
        """
        if self.fileno() != -1 and getattr(self, "_out", None):
            timeout = self._timeout
            deadline = time.monotonic() + (timeout or NONBLOCKING_FRAME_WAIT)
            # Not waiting for a thread that is sending: it writes the frame.
            if self._send_lock.acquire(blocking=False):
                try:
                    # Closing anyway: if the frame cannot go, the peer sees it cut.
                    with contextlib.suppress(OSError):
                        self._drain(deadline, False)
                finally:
                    self._send_lock.release()
        super().close()

    def _real_close(self, *args: Any, **kwargs: Any) -> None:
        # Reached by close(), or by the last makefile() object's close after
        # it: the plaintext buffered for the connection goes with it.
        super()._real_close(*args, **kwargs)  # type: ignore[misc]
        for buf in ("_rbuf", "_inbuf", "_out"):
            if hasattr(self, buf):
                getattr(self, buf).clear()


def _writable_view(buffer: Any, what: str) -> memoryview:
    """``buffer`` as a byte view, or the TypeError a plain socket's ``what`` raises."""
    try:
        view = memoryview(buffer)
    except TypeError:
        view = None
    if view is None or view.readonly:
        raise TypeError(
            f"{what}() argument 1 must be read-write bytes-like object, not {type(buffer).__name__}"
        )
    return view.cast("B")


def _writable(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    return bool(poller.poll(0))
