#!/usr/bin/env python3
# CAFE agent test script: COMET D3.2 (COMET D4.3), Appendix B, ported to Python 3.
#
# Changes from the document's Python 2.7 script, and nothing else:
#   * the agent's address is 127.0.0.1 (the document used 10.2.0.10); an optional
#     "HOST PORT" on the command line overrides it;
#   * bytes instead of str for the length prefix and the forwarding keys (Python 3);
#   * recv() loops until the announced length has arrived (TCP may deliver a frame in pieces).
#
# As in the document, the loop `range(1, 10)` configures streams 1 to 9 (the test description
# speaks of 10 flows); each must be answered with CAFE_SUCCESS.
#
# Generate cmecafe_pb2 first, e.g.:
#   python3 -m grpc_tools.protoc -I crates/proto/proto/cafe --python_out=OUT cmecafe.proto
import socket
import sys

import cmecafe_pb2

HOST, PORT = "127.0.0.1", 9999
if len(sys.argv) == 3:
    HOST, PORT = sys.argv[1], int(sys.argv[2])


def recv_exactly(sock, length):
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            raise ConnectionError("agent closed the connection")
        data += chunk
    return data


# Create a socket (SOCK_STREAM means a TCP socket)
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    # Connect to server
    sock.connect((HOST, PORT))
    # Collect streams
    m = cmecafe_pb2.GenericRequest()
    m.type = cmecafe_pb2.GenericRequest.COLLECT_EXPIRED_STREAMS
    length = m.ByteSize()
    assert length < (1 << 16)
    sock.send(bytes([length >> 8, length & 0xFF]))
    sock.send(m.SerializeToString())
    # Receive response
    t = recv_exactly(sock, 2)
    length = t[0] << 8 | t[1]
    t = recv_exactly(sock, length)
    r = cmecafe_pb2.GenericResponse.FromString(t)
    print("Received:")
    print(str(r))
    # Send configure stream
    for i in range(1, 10):
        m = cmecafe_pb2.GenericRequest()
        m.type = cmecafe_pb2.GenericRequest.CONFIGURE_STREAM
        m.configure.id = i
        m.configure.filter.ip_source = "1.1.1.1"
        m.configure.filter.ip_destination = "2.2.2.2"
        m.configure.filter.protocol = 6
        m.configure.filter.port_source = 80
        m.configure.filter.port_destination = 0
        m.configure.bandwidth = 1000
        m.configure.cos = "PR"
        m.configure.key = bytes([1, 2, i & 0xFF])
        m.configure.refresh_time = 10
        m.configure.as_path.extend([1, 2, 3])
        length = m.ByteSize()
        assert length < (1 << 16)
        sock.send(bytes([length >> 8, length & 0xFF]))
        sock.send(m.SerializeToString())
        # receive response
        t = recv_exactly(sock, 2)
        length = t[0] << 8 | t[1]
        t = recv_exactly(sock, length)
        r = cmecafe_pb2.GenericResponse.FromString(t)
        print("Received:")
        print(str(r))
finally:
    sock.close()
