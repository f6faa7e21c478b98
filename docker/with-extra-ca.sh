#!/usr/bin/env bash
# Run one build command so that it also trusts the extra CA certificates given as the BuildKit
# secret "extra_ca" (a TLS-intercepting proxy in a hospital network, or CI).
#
# The secret is mounted only for the RUN step that asks for it; the combined bundle made here is
# a temporary file removed when the command ends, so no certificate is left in the image.
# Without the secret (or with an empty one) the command runs unchanged.
set -euo pipefail

secret=/run/secrets/extra_ca
system_bundle=/etc/ssl/certs/ca-certificates.crt

if [ ! -s "${secret}" ]; then
    exec "$@"
fi

bundle=$(mktemp)
trap 'rm -f "${bundle}"' EXIT
# The public roots stay trusted too: only the proxy's certificate is added to them.
{ cat "${system_bundle}"; echo; cat "${secret}"; echo; } > "${bundle}"

# pip, Python's ssl module (urllib: data and weights downloads), requests and curl each read one of these.
export PIP_CERT="${bundle}" SSL_CERT_FILE="${bundle}" REQUESTS_CA_BUNDLE="${bundle}" CURL_CA_BUNDLE="${bundle}"
"$@"
