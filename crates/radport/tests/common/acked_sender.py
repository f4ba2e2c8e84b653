"""A C-STORE sender that records what was acknowledged: the cluster tests' oracle for "every
instance acknowledged before a node died is there".

    acked_sender.py HOST PORT CALLING_AE CALLED_AE DIR OUT

Sends every *.dcm under DIR (sorted) over one association with pynetdicom, each file's data set
as stored (no re-encoding), and appends "SOP_INSTANCE_UID PATH" to OUT, flushed, as soon as
its C-STORE-RSP says success. Exit status: 0 when every file was acknowledged, 1 when the
association broke or was aborted, 2 when it was not accepted, 3 when a file got a failure status.
"""

import os
import sys

from pydicom import dcmread
from pynetdicom import AE


def main(host, port, calling, called, directory, out):
    files = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(directory)
        for name in names
        if name.endswith(".dcm")
    )
    headers = [dcmread(path, stop_before_pixels=True) for path in files]
    ae = AE(ae_title=calling)
    ae.acse_timeout = 30
    ae.dimse_timeout = 30
    ae.network_timeout = 30
    for sop_class, syntax in sorted(
        {(h.SOPClassUID, h.file_meta.TransferSyntaxUID) for h in headers}
    ):
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate(host, int(port), ae_title=called)
    if not assoc.is_established:
        return 2
    failed = False
    with open(out, "a") as acked:
        for path, header in zip(files, headers):
            if not assoc.is_established:
                return 1
            try:
                status = assoc.send_c_store(path)
            except Exception:  # the association broke under the send
                return 1
            if status and status.Status == 0x0000:
                acked.write(f"{header.SOPInstanceUID} {path}\n")
                acked.flush()
            elif not assoc.is_established or not status:
                return 1
            else:
                failed = True
    if assoc.is_established:
        assoc.release()
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:7]))
