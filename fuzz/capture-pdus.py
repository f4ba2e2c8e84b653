#!/usr/bin/env python3
"""Captures real PDUs between DCMTK's senders and DCMTK's storescp, for the `pdu` and
`dimse_command` seed corpora (fuzz/seeds/pdu, fuzz/seeds/dimse_command).

A relay between the peers records both directions; the byte streams are cut into PDUs at
their declared lengths; the command sets are gathered from the P-DATA-TF PDVs marked as
commands. Large data PDUs are skipped (a few are kept, cut to 4 KiB) so that the corpus stays
small. Run once by hand (`python3 fuzz/capture-pdus.py`); the output is committed.

Needs DCMTK (/usr/bin/storescp, dcmsend, storescu, echoscu) and pydicom's sample files.
"""
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PDU_DIR = os.path.join(HERE, "seeds", "pdu")
CMD_DIR = os.path.join(HERE, "seeds", "dimse_command")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def relay(listen_port, target_port, streams, ready):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(8)
    ready.set()
    while True:
        try:
            client, _ = srv.accept()
        except OSError:
            return
        server = socket.create_connection(("127.0.0.1", target_port))
        up, down = bytearray(), bytearray()
        streams.append((up, down))

        def pump(a, b, record):
            while True:
                try:
                    data = a.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    try:
                        b.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                record.extend(data)
                try:
                    b.sendall(data)
                except OSError:
                    return

        threading.Thread(target=pump, args=(client, server, up), daemon=True).start()
        threading.Thread(target=pump, args=(server, client, down), daemon=True).start()


def pdus(stream):
    at = 0
    while at + 6 <= len(stream):
        length = int.from_bytes(stream[at + 2 : at + 6], "big")
        yield bytes(stream[at : at + 6 + length])
        at += 6 + length


def pdvs(pdu):
    """(message control header, fragment) of each PDV of a P-DATA-TF PDU."""
    at = 6
    while at + 6 <= len(pdu):
        length = int.from_bytes(pdu[at : at + 4], "big")
        yield pdu[at + 5], pdu[at + 6 : at + 4 + length]
        at += 4 + length


def save(directory, data, name):
    os.makedirs(directory, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()[:12]
    with open(os.path.join(directory, f"{name}-{digest}"), "wb") as f:
        f.write(data)


def main():
    import pydicom

    files = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
    samples = [
        os.path.join(files, n)
        for n in ("CT_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm", "image_dfl.dcm",
                  "MR_small_bigendian.dcm", "SC_rgb_rle.dcm")
    ]
    for d in (PDU_DIR, CMD_DIR):
        shutil.rmtree(d, ignore_errors=True)
    scp_port, relay_port = free_port(), free_port()
    out = tempfile.mkdtemp()
    scp = subprocess.Popen(
        ["/usr/bin/storescp", "-od", out, "+xa", str(scp_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    refusing_port = free_port()
    refusing = subprocess.Popen(
        ["/usr/bin/storescp", "--refuse", str(refusing_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    streams = []
    ready = threading.Event()
    threading.Thread(target=relay, args=(relay_port, scp_port, streams, ready), daemon=True).start()
    refusing_relay = free_port()
    ready2 = threading.Event()
    threading.Thread(target=relay, args=(refusing_relay, refusing_port, streams, ready2),
                     daemon=True).start()
    ready.wait()
    ready2.wait()
    time.sleep(0.5)
    peer = ["127.0.0.1", str(relay_port)]
    runs = [
        ["/usr/bin/echoscu", "-aec", "RADPORT", *peer],
        ["/usr/bin/dcmsend", "-aec", "RADPORT", "-aet", "FUZZSCU", *peer, *samples[:3]],
        ["/usr/bin/storescu", "-aec", "RADPORT", "-xd", *peer, samples[1]],
        ["/usr/bin/storescu", "-aec", "RADPORT", "-xb", *peer, samples[4]],
        ["/usr/bin/storescu", "-aec", "RADPORT", "--propose-deflated", *peer, samples[3]],
        ["/usr/bin/storescu", "-aec", "RADPORT", "--abort", *peer, samples[5]],
        ["/usr/bin/storescu", "-aec", "RADPORT", "--max-pdu", "4096", *peer, samples[0]],
        ["/usr/bin/echoscu", "-aec", "RADPORT", "127.0.0.1", str(refusing_relay)],
    ]
    for cmd in runs:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        time.sleep(0.3)
    time.sleep(1)
    scp.terminate()
    refusing.terminate()
    scp.wait()
    refusing.wait()
    shutil.rmtree(out, ignore_errors=True)

    names = {1: "associate-rq", 2: "associate-ac", 3: "associate-rj", 4: "p-data",
             5: "release-rq", 6: "release-rp", 7: "abort"}
    kept_data = 0
    for up, down in streams:
        for stream in (up, down):
            command = bytearray()
            for pdu in pdus(stream):
                kind = names.get(pdu[0], "unknown")
                if kind == "p-data":
                    is_command = False
                    for header, fragment in pdvs(pdu):
                        if header & 1:
                            is_command = True
                            command.extend(fragment)
                            if header & 2:
                                save(CMD_DIR, bytes(command), "command")
                                command = bytearray()
                    if not is_command:
                        if kept_data >= 6:
                            continue
                        kept_data += 1
                        if len(pdu) > 4096:
                            # Cut, with its lengths fixed: one PDV of what is left.
                            body = pdu[12 : 4096]
                            pdv = (len(body) + 2).to_bytes(4, "big") + pdu[10:12] + body
                            pdu = pdu[:2] + len(pdv).to_bytes(4, "big") + pdv
                save(PDU_DIR, pdu, kind)
    for d in (PDU_DIR, CMD_DIR):
        print(d, len(os.listdir(d)), "files",
              sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)), "bytes")


if __name__ == "__main__":
    sys.exit(main())
