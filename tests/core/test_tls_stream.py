"""TlsStream in memory: the sans-IO TLS layer every data path and the load generator drive.

No socket: two streams, a server's and a client's, pass their bytes to each
other. The certificates are made for the test run with trustme (no key is
ever committed).
"""

from __future__ import annotations

import ssl

import pytest

from chatproto.tls import ThrowawayCertificate, TlsStream, client_context, server_context

pytest.importorskip("trustme")


def connected_pair(
    cert: ThrowawayCertificate, *, split: bool = False
) -> tuple[TlsStream, TlsStream, bytes]:
    """A server and a client stream after their handshake; the plaintext the server got."""
    server = TlsStream(server_context(cert.cert_file, cert.key_file), server_side=True)
    client = TlsStream(cert.client_context(), server_side=False, server_hostname="127.0.0.1")
    client.start()
    got = b""
    for _ in range(10):
        data = client.data_to_send()
        chunks = [data[i : i + 1] for i in range(len(data))] if split else [data]
        for chunk in chunks:
            got += server.receive(chunk)
        back = server.data_to_send()
        for chunk in [back[i : i + 1] for i in range(len(back))] if split else [back]:
            assert client.receive(chunk) == b""
        if client.established and server.established and not client.wants_write:
            return server, client, got
    raise AssertionError("the handshake did not finish")


def exchange(sender: TlsStream, receiver: TlsStream, data: bytes) -> bytes:
    sender.send(data)
    return receiver.receive(sender.data_to_send())


def test_stream_carries_lines_both_ways(cert: ThrowawayCertificate) -> None:
    server, client, early = connected_pair(cert)
    assert early == b""
    assert client.version.startswith("TLSv1.")
    assert exchange(client, server, b"LOGIN ann\nPING x\n") == b"LOGIN ann\nPING x\n"
    assert exchange(server, client, b"OK\nPONG x\n") == b"OK\nPONG x\n"


def test_stream_handshake_and_records_split_byte_by_byte(cert: ThrowawayCertificate) -> None:
    server, client, _ = connected_pair(cert, split=True)
    client.send(b"MSG hello\n")
    wire = client.data_to_send()
    got = b"".join(server.receive(wire[i : i + 1]) for i in range(len(wire)))
    assert got == b"MSG hello\n"


def test_stream_half_close_lets_the_other_side_answer(cert: ThrowawayCertificate) -> None:
    server, client, _ = connected_pair(cert)
    client.send(b"PING last\n")
    client.close()  # close_notify after the line: a half-close
    assert client.closed
    assert server.receive(client.data_to_send()) == b"PING last\n"
    assert server.peer_closed
    assert exchange(server, client, b"PONG last\n") == b"PONG last\n"
    server.close()
    assert client.receive(server.data_to_send()) == b""
    assert client.peer_closed
    with pytest.raises(RuntimeError):
        client.send(b"too late\n")


def test_stream_refuses_a_plaintext_peer(cert: ThrowawayCertificate) -> None:
    server = TlsStream(server_context(cert.cert_file, cert.key_file), server_side=True)
    with pytest.raises(ssl.SSLError):
        server.receive(b"LOGIN ann\n" * 10)


def test_stream_client_checks_the_authority_and_the_name(cert: ThrowawayCertificate) -> None:
    server_ctx = server_context(cert.cert_file, cert.key_file)
    for context, name in (
        (client_context(), "127.0.0.1"),  # the system's CAs do not know ours
        (cert.client_context(), "chat.example"),  # ours, but not that name
    ):
        server = TlsStream(server_ctx, server_side=True)
        client = TlsStream(context, server_side=False, server_hostname=name)
        client.start()
        server.receive(client.data_to_send())
        with pytest.raises(ssl.SSLCertVerificationError):
            client.receive(server.data_to_send())
    insecure = TlsStream(
        client_context(insecure=True), server_side=False, server_hostname="chat.example"
    )
    insecure.start()
    server = TlsStream(server_ctx, server_side=True)
    server.receive(insecure.data_to_send())
    insecure.receive(server.data_to_send())
    assert insecure.established
