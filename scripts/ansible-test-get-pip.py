"""Our stand-in for ansible-test's pip bootstrap script (get-pip).

ansible-test bootstraps pip into each sanity-test virtualenv by downloading a get-pip script
from ci-files.testing.ansible.com, a host this network does not reach. It runs the cached copy
instead when one exists, so `make sanity` puts this file there. It does what get-pip does with
what is reachable: pip from the standard library's ensurepip, then `pip install` of exactly the
pinned packages ansible-test asks for (pip==X and friends), from PyPI.
"""

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}  # get-pip's own flags, not pip's

ensurepip.bootstrap(upgrade=True)
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
# ansible-test runs this with a filtered environment (no PIP_CERT / SSL_CERT_FILE); use the
# distribution's CA bundle, as the host's own pip does, so PyPI behind a TLS proxy still works.
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
if os.path.isfile(SYSTEM_CA):
    args = ["--cert", SYSTEM_CA, *args]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
